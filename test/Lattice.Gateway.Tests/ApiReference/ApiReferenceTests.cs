using System.Net;
using System.Text.RegularExpressions;
using Lattice.Gateway.Tests.Identity;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.OpenApi;

namespace Lattice.Gateway.Tests.ApiReference;

/// <summary>
/// <c>/openapi.json</c> is an OpenAPI 3 document of every route of Lattice's own APIs (read from the real route table),
/// each named, summarised and tagged; <c>/docs</c> renders it from assets the gateway serves itself.
/// </summary>
public sealed partial class ApiReferenceTests(OAuthGateway server) : IClassFixture<OAuthGateway>
{
    /// <summary>The route prefixes of Lattice's own APIs: every route under them is documented.</summary>
    private static readonly string[] OwnPrefixes = ["/v1/tasks/", "/v1/personal-runtimes", "/v1/runtimes/pair", "/v1/runtimes/me", "/v1/usage", "/v1/invoices", "/admin/v1/"];

    [Fact]
    public async Task The_document_is_OpenAPI_3_and_lists_every_route_of_the_own_APIs()
    {
        using var anonymous = server.Client(null);
        using var response = await anonymous.GetAsync("openapi.json");
        var json = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, json);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);

        var (document, diagnostic) = OpenApiDocument.Parse(json, "json");
        Assert.NotNull(document);
        Assert.NotNull(diagnostic);
        Assert.True(diagnostic.Errors.Count == 0, string.Join("; ", diagnostic.Errors.Select(e => e.ToString())));
        Assert.True(diagnostic.SpecificationVersion is OpenApiSpecVersion.OpenApi3_0 or OpenApiSpecVersion.OpenApi3_1, diagnostic.SpecificationVersion.ToString());
        Assert.Equal("Lattice API", document.Info.Title);

        var documented = document.Paths.SelectMany(p => p.Value.Operations!.Select(o => $"{o.Key.Method.ToUpperInvariant()} {p.Key}")).ToHashSet(StringComparer.Ordinal);
        var routed = server.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .Where(e => OwnPrefixes.Any(p => e.RoutePattern.RawText!.StartsWith(p, StringComparison.Ordinal)))
            .SelectMany(e => e.Metadata.GetMetadata<Microsoft.AspNetCore.Routing.IHttpMethodMetadata>()!.HttpMethods.Select(m => $"{m} {CatchAll().Replace(e.RoutePattern.RawText!, "{")}"))
            .ToList();
        Assert.True(routed.Count >= 50, $"Only {routed.Count} routes found under the own prefixes.");
        var missing = routed.Where(r => !documented.Contains(r)).ToList();
        Assert.True(missing.Count == 0, "Routes missing from /openapi.json: " + string.Join(", ", missing));

        foreach (var path in new[] { "/v1/tasks/{task}", "/v1/personal-runtimes", "/v1/usage", "/v1/usage/requests", "/v1/invoices", "/admin/v1/workspaces", "/admin/v1/models" })
        {
            Assert.Contains(path, document.Paths.Keys);
        }
        // The vendor-compatible surfaces, sign-in and probes are not Lattice's own API.
        foreach (var path in new[] { "/v1/chat/completions", "/v1/messages", "/openai/v1/tasks/{task}", "/connect/token", "/healthz", "/metrics", "/v1/runtimes/connect" })
        {
            Assert.DoesNotContain(path, document.Paths.Keys);
        }

        var operations = document.Paths.SelectMany(p => p.Value.Operations!.Values).ToList();
        Assert.All(operations, o =>
        {
            Assert.False(string.IsNullOrWhiteSpace(o.OperationId));
            Assert.False(string.IsNullOrWhiteSpace(o.Summary));
            Assert.NotEmpty(o.Tags!);
        });
        Assert.Equal(operations.Count, operations.Select(o => o.OperationId).Distinct(StringComparer.Ordinal).Count());
        Assert.Contains("bearer", document.Components!.SecuritySchemes!.Keys);
    }

    [Fact]
    public async Task The_docs_page_needs_nothing_from_outside_the_gateway()
    {
        using var anonymous = server.Client(null);
        using var response = await anonymous.GetAsync("docs/index.html");
        var html = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, html);
        Assert.Equal("text/html", response.Content.Headers.ContentType?.MediaType);
        Assert.DoesNotMatch(AbsoluteUrl(), html);

        // Every script and stylesheet the page loads is served by the gateway, and none of the page's own code names
        // another host (the bundled library's licence texts aside, it is the configuration that would).
        var assets = Asset().Matches(html).Select(m => m.Groups["url"].Value).Distinct().ToList();
        Assert.Contains(assets, a => a.EndsWith(".js", StringComparison.Ordinal));
        Assert.Contains(assets, a => a.EndsWith(".css", StringComparison.Ordinal));
        foreach (var asset in assets)
        {
            using var loaded = await anonymous.GetAsync(new Uri(new Uri(server.Origin + "/docs/"), asset));
            Assert.True(loaded.StatusCode == HttpStatusCode.OK, $"{asset}: {(int)loaded.StatusCode}");
        }
        var config = await anonymous.GetStringAsync("docs/index.js");
        Assert.Contains("/openapi.json", config, StringComparison.Ordinal);
        // Its comments credit their sources; no string in its code is another host's address.
        Assert.DoesNotMatch(QuotedAbsoluteUrl(), config);
    }

    /// <summary><c>{**id}</c> as the document writes it: <c>{id}</c>.</summary>
    [GeneratedRegex(@"\{\*\*?")]
    private static partial Regex CatchAll();

    [GeneratedRegex(@"https?://", RegexOptions.IgnoreCase)]
    private static partial Regex AbsoluteUrl();

    [GeneratedRegex(@"[""'`]\s*https?://", RegexOptions.IgnoreCase)]
    private static partial Regex QuotedAbsoluteUrl();

    [GeneratedRegex("""(?:src|href)="(?<url>[^"]+)" """, RegexOptions.IgnorePatternWhitespace)]
    private static partial Regex Asset();
}
