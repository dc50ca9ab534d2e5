using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;

namespace Lattice.Gateway.ApiReference;

/// <summary>
/// Lattice's own API reference: the OpenAPI document of its own routes (tasks, runtimes, usage, invoices, admin) at
/// <c>/openapi.json</c>, and a page that renders it at <c>/docs</c> (Swagger UI, its scripts and styles served from the
/// gateway itself: it works offline). Both are public, like any API's published documentation. The OpenAI- and
/// Anthropic-compatible surfaces are documented by those vendors' own references and are not repeated here.
/// </summary>
public static class ApiReferenceServices
{
    public const string DocumentPath = "/openapi.json";
    public const string PagePrefix = "docs";

    public static IServiceCollection AddApiReference(this IServiceCollection services)
    {
        services.AddOpenApi(options =>
        {
            options.OpenApiVersion = OpenApiSpecVersion.OpenApi3_1;
            // Only what Describe marked: the vendor-compatible surfaces, sign-in pages and probes stay out.
            options.ShouldInclude = description => description.ActionDescriptor.EndpointMetadata.OfType<DescribedMetadata>().Any();
            options.AddDocumentTransformer((document, _, _) =>
            {
                document.Info = new OpenApiInfo
                {
                    Title = "Lattice API",
                    Version = "v1",
                    Description = "Lattice's own APIs: tasks, personal runtimes, usage, invoices and the admin API. Every operation takes "
                        + "'Authorization: Bearer <key or access token>' with the scope it names; errors use OpenAI's envelope "
                        + "{\"error\": {\"message\", \"type\", \"param\", \"code\"}}. The OpenAI- and Anthropic-compatible routes "
                        + "(/v1/chat/completions, /v1/messages, …) follow those vendors' references.",
                };
                document.Components ??= new OpenApiComponents();
                document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>(StringComparer.Ordinal);
                document.Components.SecuritySchemes[BearerScheme] = new OpenApiSecurityScheme
                {
                    Type = SecuritySchemeType.Http,
                    Scheme = "bearer",
                    Description = "A developer key (sk_…) or an OAuth access token; the runtime link's routes take a runtime credential (lrt_…).",
                };
                document.Security = [new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(BearerScheme, document)] = [] }];
                return Task.CompletedTask;
            });
        });
        return services;
    }

    /// <summary><c>/openapi.json</c> and the page at <c>/docs</c>.</summary>
    public static void MapApiReference(this WebApplication app)
    {
        app.MapOpenApi(DocumentPath);
        app.UseSwaggerUI(ui =>
        {
            ui.RoutePrefix = PagePrefix;
            ui.DocumentTitle = "Lattice API reference";
            ui.SwaggerEndpoint(DocumentPath, "Lattice API v1");
            // Swagger UI would otherwise ask validator.swagger.io to check the document: nothing leaves the page.
            ui.ConfigObject.ValidatorUrl = "none";
        });
    }

    private const string BearerScheme = "bearer";

    /// <summary>Names, summarises and tags an operation of Lattice's own API, which puts it in <c>/openapi.json</c>.</summary>
    public static RouteHandlerBuilder Describe(this RouteHandlerBuilder route, string tag, string name, string summary) =>
        route.WithTags(tag).WithName(name).WithSummary(summary).WithMetadata(DescribedMetadata.Instance);

    /// <summary>Marks an endpoint as part of Lattice's own documented API.</summary>
    private sealed class DescribedMetadata
    {
        public static readonly DescribedMetadata Instance = new();
    }
}
