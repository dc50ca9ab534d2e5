using System.Buffers.Text;
using System.Security.Cryptography;
using Lattice.Gateway.OpenAi;
using Microsoft.AspNetCore.DataProtection;

namespace Lattice.Gateway.Billing.Alerts;

/// <summary>
/// The signing secrets of budget alerts and the rules for where alerts may go. A secret signs every delivery, so the
/// gateway must be able to read it back: it is stored protected with ASP.NET Core Data Protection (the key ring in the
/// data directory), not hashed.
/// </summary>
public sealed class BudgetAlertSecrets(IDataProtectionProvider dataProtection)
{
    public const string Prefix = "whsec_";

    /// <summary>The Data Protection purpose: a secret protected for alerts cannot be unprotected as anything else.</summary>
    public const string Purpose = "Lattice.BudgetAlerts.Secret";

    /// <summary>The longest <c>alert_url</c> accepted.</summary>
    public const int MaxUrlLength = 2048;

    private readonly IDataProtector _protector = dataProtection.CreateProtector(Purpose);

    /// <summary>A new secret: <c>whsec_</c> followed by 32 random bytes in base64url (43 characters).</summary>
    public static string NewSecret() => Prefix + Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(32));

    /// <summary>What <see cref="BudgetEntity.AlertSecret"/> stores for <paramref name="secret"/>.</summary>
    public string Protect(string secret) => _protector.Protect(secret);

    /// <summary>The secret behind a stored <see cref="BudgetEntity.AlertSecret"/>; null when it cannot be read (the key ring that protected it is gone, or the value is not one).</summary>
    public string? Unprotect(string protectedSecret)
    {
        try
        {
            return _protector.Unprotect(protectedSecret);
        }
        catch (CryptographicException)
        {
            return null;
        }
    }

    /// <summary>
    /// Whether <paramref name="url"/> can receive alerts: an absolute <c>http</c> or <c>https</c> URL with a host and no
    /// user name or password, at most <see cref="MaxUrlLength"/> characters. On false, <paramref name="error"/> is the
    /// 400 answer naming <c>alert_url</c>.
    /// </summary>
    public static bool TryValidateUrl(string? url, out GatewayError error)
    {
        error = default;
        if (string.IsNullOrEmpty(url) || url.Length > MaxUrlLength
            || !Uri.TryCreate(url, UriKind.Absolute, out var uri)
            || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps)
            || string.IsNullOrEmpty(uri.Host))
        {
            error = GatewayError.InvalidRequest($"'alert_url' must be an absolute http or https URL of at most {MaxUrlLength} characters.", "alert_url");
            return false;
        }
        if (uri.UserInfo.Length > 0)
        {
            // Credentials in the URL would be kept in plain text and shown back in listings; the signature is how a receiver knows the sender.
            error = GatewayError.InvalidRequest("'alert_url' must not contain a user name or password; verify the Lattice-Signature header instead.", "alert_url");
            return false;
        }
        return true;
    }
}
