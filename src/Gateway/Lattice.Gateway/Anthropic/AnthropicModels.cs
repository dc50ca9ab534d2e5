using System.Globalization;
using System.Text.Json;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Runtimes;

namespace Lattice.Gateway.Anthropic;

/// <summary>
/// <c>GET /v1/models</c> and <c>GET /v1/models/{id}</c> in Anthropic's shapes, for requests that carry
/// <c>anthropic-version</c> (as Anthropic's SDKs always do): <c>{"type":"model","id","display_name","created_at"}</c>
/// items in a page <c>{"data","has_more","first_id","last_id"}</c>, newest first, paged with <c>limit</c>,
/// <c>after_id</c> and <c>before_id</c>. The routes are the OpenAI surface's; only the rendering differs.
/// </summary>
public static class AnthropicModels
{
    private const int DefaultLimit = 20;
    private const int MaxLimit = 1000;

    public static bool Wants(HttpRequest request) => request.Headers.ContainsKey("anthropic-version");

    public static async Task ListAsync(HttpContext context, Authenticator authenticator, CatalogStore catalog, RuntimeStore runtimes)
    {
        context.Response.Headers["request-id"] = context.TraceIdentifier;
        if (await EndpointAuth.RequireAsync(context, authenticator, AnthropicErrors.WriteAsync, Scopes.CatalogRead, Scopes.Inference) is not { } caller)
        {
            return;
        }
        var query = context.Request.Query;
        var limit = DefaultLimit;
        if (query.TryGetValue("limit", out var limitValue)
            && (limitValue.Count != 1 || !int.TryParse(limitValue[0], NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit is < 1 or > MaxLimit))
        {
            await AnthropicErrors.WriteAsync(context, GatewayError.InvalidRequest($"limit: must be an integer from 1 to {MaxLimit}.", "limit"));
            return;
        }
        var afterId = Single(query, "after_id");
        var beforeId = Single(query, "before_id");
        if (afterId is not null && beforeId is not null)
        {
            await AnthropicErrors.WriteAsync(context, GatewayError.InvalidRequest("before_id, after_id: give at most one of them.", "before_id"));
            return;
        }

        // Newest first, as Anthropic lists its models; the id breaks ties so pages are stable.
        var models = VisibleModels.List(caller, catalog.Current, runtimes)
            .OrderByDescending(m => m.CreatedAt).ThenBy(m => m.Id, StringComparer.Ordinal).ToList();
        var (start, end, hasMore, error) = Page(models, limit, afterId, beforeId);
        if (error is { } refused)
        {
            await AnthropicErrors.WriteAsync(context, refused);
            return;
        }

        await OpenAiEndpoints.WriteJsonAsync(context, writer =>
        {
            writer.WriteStartObject();
            writer.WriteStartArray("data");
            for (var i = start; i < end; i++)
            {
                WriteModel(writer, models[i]);
            }
            writer.WriteEndArray();
            writer.WriteBoolean("has_more", hasMore);
            WriteId(writer, "first_id", end > start ? models[start].Id : null);
            WriteId(writer, "last_id", end > start ? models[end - 1].Id : null);
            writer.WriteEndObject();
        });
    }

    public static async Task GetAsync(HttpContext context, string id, Authenticator authenticator, CatalogStore catalog, RuntimeStore runtimes)
    {
        context.Response.Headers["request-id"] = context.TraceIdentifier;
        if (await EndpointAuth.RequireAsync(context, authenticator, AnthropicErrors.WriteAsync, Scopes.CatalogRead, Scopes.Inference) is not { } caller)
        {
            return;
        }
        var modelId = Uri.UnescapeDataString(id);
        if (VisibleModels.Find(modelId, caller, catalog.Current, runtimes) is not { } model)
        {
            await AnthropicErrors.WriteAsync(context, GatewayError.ModelNotFound(modelId));
            return;
        }
        await OpenAiEndpoints.WriteJsonAsync(context, writer => WriteModel(writer, model));
    }

    /// <summary>
    /// The page of <paramref name="models"/> a request asks for, as Anthropic pages: the first <paramref name="limit"/>
    /// items after <paramref name="afterId"/> (or from the start), or the last <paramref name="limit"/> items before
    /// <paramref name="beforeId"/>; <c>has_more</c> says whether more lie further in that direction.
    /// </summary>
    internal static (int Start, int End, bool HasMore, GatewayError? Error) Page(IReadOnlyList<ListedModel> models, int limit, string? afterId, string? beforeId)
    {
        if (beforeId is not null)
        {
            var at = IndexOf(models, beforeId);
            if (at < 0)
            {
                return (0, 0, false, GatewayError.InvalidRequest($"before_id: no model '{beforeId}' is listed.", "before_id"));
            }
            var from = Math.Max(0, at - limit);
            return (from, at, from > 0, null);
        }
        var start = 0;
        if (afterId is not null)
        {
            var at = IndexOf(models, afterId);
            if (at < 0)
            {
                return (0, 0, false, GatewayError.InvalidRequest($"after_id: no model '{afterId}' is listed.", "after_id"));
            }
            start = at + 1;
        }
        var end = Math.Min(models.Count, start + limit);
        return (start, end, end < models.Count, null);
    }

    private static int IndexOf(IReadOnlyList<ListedModel> models, string id)
    {
        for (var i = 0; i < models.Count; i++)
        {
            if (models[i].Id == id)
            {
                return i;
            }
        }
        return -1;
    }

    /// <summary>One model. The catalog has no display names, so the id is the name shown.</summary>
    private static void WriteModel(Utf8JsonWriter writer, ListedModel model)
    {
        writer.WriteStartObject();
        writer.WriteString("type", "model");
        writer.WriteString("id", model.Id);
        writer.WriteString("display_name", model.Id);
        writer.WriteString("created_at", model.CreatedAt.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture));
        writer.WriteEndObject();
    }

    private static void WriteId(Utf8JsonWriter writer, string name, string? id)
    {
        if (id is null)
        {
            writer.WriteNull(name);
        }
        else
        {
            writer.WriteString(name, id);
        }
    }

    private static string? Single(IQueryCollection query, string name) =>
        query.TryGetValue(name, out var value) && value.Count > 0 && !string.IsNullOrEmpty(value[^1]) ? value[^1] : null;
}
