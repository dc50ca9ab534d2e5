using Lattice.Gateway.Hosting;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Auth;

/// <summary>
/// How strong a configured admin key (<c>Lattice:AdminKey</c>) must be. It opens every workspace, so a guessable one is
/// refused at start-up rather than stored; <c>lattice up</c> and <see cref="ApiKeySecrets.NewSecret"/> make keys that pass.
/// </summary>
public static class AdminKeyPolicy
{
    public const int MinimumLength = 32;
    public const int MinimumDistinctCharacters = 12;

    /// <summary>Words that mark a key as a placeholder someone meant to replace.</summary>
    private static readonly string[] Placeholders = ["changeme", "change-me", "change_me", "password", "replaceme", "example"];

    /// <summary>Why <paramref name="key"/> is too weak, or null when it is strong enough (or not set).</summary>
    public static string? Weakness(string? key)
    {
        if (string.IsNullOrEmpty(key))
        {
            return null;
        }
        if (key.Length < MinimumLength)
        {
            return $"it has {key.Length} characters; at least {MinimumLength} are required";
        }
        var classes = (key.Any(char.IsAsciiLetterLower) ? 1 : 0) + (key.Any(char.IsAsciiLetterUpper) ? 1 : 0)
            + (key.Any(char.IsAsciiDigit) ? 1 : 0) + (key.Any(c => !char.IsAsciiLetterOrDigit(c)) ? 1 : 0);
        if (classes < 2)
        {
            return "it uses only one kind of character; mix at least two of lower case, upper case, digits and symbols";
        }
        if (key.Distinct().Count() < MinimumDistinctCharacters)
        {
            return $"it repeats too few characters; at least {MinimumDistinctCharacters} different ones are required";
        }
        foreach (var word in Placeholders)
        {
            if (key.Contains(word, StringComparison.OrdinalIgnoreCase))
            {
                return $"it contains the placeholder '{word}'";
            }
        }
        return null;
    }

    /// <summary>Start-up validation of <see cref="GatewayOptions.AdminKey"/>; the message names the setting, never the key.</summary>
    public sealed class Validation : IValidateOptions<GatewayOptions>
    {
        public ValidateOptionsResult Validate(string? name, GatewayOptions options) =>
            Weakness(options.AdminKey) is { } weakness
                ? ValidateOptionsResult.Fail($"Lattice:AdminKey is too weak: {weakness}. Generate one, e.g. with `openssl rand -base64 48`.")
                : ValidateOptionsResult.Success;
    }
}
