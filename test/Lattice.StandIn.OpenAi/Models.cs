using System.Text.Json;

namespace Lattice.StandIn.OpenAi;

/// <summary>GET /v1/models and GET /v1/models/{id}.</summary>
internal static class Models
{
    public const long Created = 1700000000;
    public const string OwnedBy = "standin";

    /// <summary>The models the stand-in lists. Any model name is accepted by the other endpoints.</summary>
    public static readonly string[] Ids = ["standin-chat", "standin-embed", "standin-transcribe"];

    /// <summary>An alias answered with its dated snapshot's name, as OpenAI answers <c>gpt-4o-mini</c> with <c>gpt-4o-mini-2024-07-18</c>.</summary>
    public const string DatedAlias = "standin-dated";
    public const string DatedSnapshot = "standin-dated-2024-07-18";

    /// <summary>The model name an answer carries for a request that named <paramref name="requested"/>.</summary>
    public static string Answered(string requested) => requested == DatedAlias ? DatedSnapshot : requested;

    private static void WriteModel(Utf8JsonWriter w, string id)
    {
        w.WriteStartObject();
        w.WriteString("id", id);
        w.WriteString("object", "model");
        w.WriteNumber("created", Created);
        w.WriteString("owned_by", OwnedBy);
        w.WriteEndObject();
    }

    public static Task HandleList(HttpContext ctx)
    {
        var w = JsonOut.Begin();
        w.WriteStartObject();
        w.WriteString("object", "list");
        w.WriteStartArray("data");
        foreach (string id in Ids)
        {
            WriteModel(w, id);
        }

        w.WriteEndArray();
        w.WriteEndObject();
        return JsonOut.Send(ctx, StatusCodes.Status200OK, w);
    }

    public static Task HandleGet(HttpContext ctx)
    {
        string id = ctx.Request.RouteValues["id"] as string ?? string.Empty;
        if (Array.IndexOf(Ids, id) < 0)
        {
            return JsonOut.Error(ctx, StatusCodes.Status404NotFound,
                $"The model '{id}' does not exist or you do not have access to it.",
                "invalid_request_error", "model", "model_not_found");
        }

        var w = JsonOut.Begin();
        WriteModel(w, id);
        return JsonOut.Send(ctx, StatusCodes.Status200OK, w);
    }
}
