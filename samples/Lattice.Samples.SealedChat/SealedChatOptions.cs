using System.ComponentModel.DataAnnotations;
using Lattice.Client;

namespace Lattice.Samples.SealedChat;

/// <summary>The <c>SealedChat</c> configuration section (environment: <c>SealedChat__Gateway</c>, …).</summary>
public sealed class SealedChatOptions
{
    /// <summary>The Lattice gateway, such as <c>http://127.0.0.1:8080</c>.</summary>
    [Required]
    public Uri? Gateway { get; set; }

    /// <summary>This app's client id on the gateway (<c>app_…</c>, from <c>lattice apps create</c>).</summary>
    [Required]
    public string? ClientId { get; set; }

    /// <summary>Its client secret (<c>lcs_…</c>) when it was registered as confidential; null for a public app.</summary>
    public string? ClientSecret { get; set; }

    /// <summary>Where browsers reach this app, such as <c>http://127.0.0.1:5080</c>; the redirect URI is this plus <c>/callback</c>.</summary>
    [Required]
    public Uri? PublicUrl { get; set; }

    public Uri RedirectUri => new(PublicUrl!, "/callback");
}

public static class SealedChatServices
{
    /// <summary>The scopes the app asks for: run models on the user's runtimes, and stay signed in (refresh tokens).</summary>
    public static readonly string[] Scopes = ["lattice:compute:inference", "offline_access"];

    public static IServiceCollection AddSealedChat(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<SealedChatOptions>().Bind(configuration.GetSection("SealedChat")).ValidateDataAnnotations().ValidateOnStart();
        // One OAuth client for the app; one LatticeClient per signed-in user (it holds that user's tokens).
        services.AddSingleton(sp =>
        {
            var options = sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<SealedChatOptions>>().Value;
            return new LatticeOAuthClient(options.Gateway!, options.ClientId!, options.ClientSecret);
        });
        services.AddSingleton<Sessions>();
        services.AddAntiforgery();
        return services;
    }
}
