using System.Buffers;
using System.Text;
using System.Text.Json;

namespace Lattice.StandIn.OpenAi;

/// <summary>
/// POST /v1/responses (OpenAI's Responses API, text only): echoes the last user text as "You said: …", whole or as the
/// Responses event stream (<c>event:</c> + <c>data:</c>, <c>sequence_number</c> from 0, ending with
/// <c>response.completed</c> — no <c>[DONE]</c>). Usage: words of every input text, words of the reply.
/// </summary>
internal static class Responses
{
    private static long s_nextId;

    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static async Task Handle(HttpContext ctx)
    {
        var body = RequestBody.Get(ctx).Body;
        using var doc = JsonOut.TryParseObject(body);
        if (doc is null)
        {
            await JsonOut.InvalidJson(ctx);
            return;
        }
        var root = doc.RootElement;
        if (!root.TryGetProperty("model", out var modelElement) || modelElement.ValueKind != JsonValueKind.String)
        {
            await JsonOut.MissingParameter(ctx, "model");
            return;
        }
        if (!root.TryGetProperty("input", out var input) || input.ValueKind is not (JsonValueKind.String or JsonValueKind.Array))
        {
            await JsonOut.MissingParameter(ctx, "input");
            return;
        }
        var model = modelElement.GetString()!;
        var fault = Fault.From(model);
        var stream = root.TryGetProperty("stream", out var s) && s.ValueKind == JsonValueKind.True;
        if (fault.Kind != FaultKind.None && await fault.ApplyBeforeResponseAsync(ctx, stream))
        {
            return;
        }

        var inputWords = 0;
        var last = "";
        if (input.ValueKind == JsonValueKind.String)
        {
            last = input.GetString()!;
            inputWords = Words.Count(last);
        }
        else
        {
            foreach (var item in input.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.Object || !item.TryGetProperty("content", out var content))
                {
                    continue;
                }
                var text = content.ValueKind == JsonValueKind.String ? content.GetString()! : string.Concat(content.EnumerateArray()
                    .Where(p => p.TryGetProperty("text", out var t) && t.ValueKind == JsonValueKind.String).Select(p => p.GetProperty("text").GetString()));
                inputWords += Words.Count(text);
                if (item.TryGetProperty("role", out var role) && role.ValueEquals("user"u8))
                {
                    last = text;
                }
            }
        }
        var reply = ChatCompletions.ReplyPrefix + last;
        var id = "resp_standin_" + Interlocked.Increment(ref s_nextId);
        var itemId = "msg_standin_" + s_nextId;
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var answer = new Answer(id, itemId, created, model, reply, inputWords, Words.Count(reply));

        if (!stream)
        {
            var buffer = new ArrayBufferWriter<byte>(1024);
            using (var w = new Utf8JsonWriter(buffer, WriterOptions))
            {
                WriteResponse(w, answer, completed: true);
            }
            ctx.Response.ContentType = "application/json";
            ctx.Response.ContentLength = buffer.WrittenCount;
            await ctx.Response.Body.WriteAsync(buffer.WrittenMemory, ctx.RequestAborted);
            return;
        }

        ctx.Response.ContentType = "text/event-stream; charset=utf-8";
        ctx.Response.Headers.CacheControl = "no-cache";
        var sequence = 0;
        var output = ctx.Response.BodyWriter;
        void Event(string type, Action<Utf8JsonWriter> fields)
        {
            output.Write(Encoding.UTF8.GetBytes("event: " + type + "\ndata: "));
            using (var w = new Utf8JsonWriter(output, WriterOptions))
            {
                w.WriteStartObject();
                w.WriteString("type", type);
                w.WriteNumber("sequence_number", sequence++);
                fields(w);
                w.WriteEndObject();
            }
            output.Write("\n\n"u8);
        }
        try
        {
            Event("response.created", w => { w.WritePropertyName("response"); WriteResponse(w, answer, completed: false); });
            Event("response.in_progress", w => { w.WritePropertyName("response"); WriteResponse(w, answer, completed: false); });
            Event("response.output_item.added", w =>
            {
                w.WriteNumber("output_index", 0);
                w.WritePropertyName("item");
                WriteMessage(w, answer, completed: false);
            });
            Event("response.content_part.added", w =>
            {
                Position(w, answer);
                w.WritePropertyName("part");
                WriteText(w, "");
            });
            await output.FlushAsync(ctx.RequestAborted);
            var ends = Words.WordEnds(reply);
            for (var k = 0; k < ends.Length; k++)
            {
                var delta = reply[(k == 0 ? 0 : ends[k - 1])..(k == ends.Length - 1 ? reply.Length : ends[k])];
                Event("response.output_text.delta", w =>
                {
                    Position(w, answer);
                    w.WriteString("delta", delta);
                    w.WriteStartArray("logprobs");
                    w.WriteEndArray();
                });
                await output.FlushAsync(ctx.RequestAborted);
            }
            Event("response.output_text.done", w =>
            {
                Position(w, answer);
                w.WriteString("text", reply);
                w.WriteStartArray("logprobs");
                w.WriteEndArray();
            });
            Event("response.content_part.done", w =>
            {
                Position(w, answer);
                w.WritePropertyName("part");
                WriteText(w, reply);
            });
            Event("response.output_item.done", w =>
            {
                w.WriteNumber("output_index", 0);
                w.WritePropertyName("item");
                WriteMessage(w, answer, completed: true);
            });
            Event("response.completed", w => { w.WritePropertyName("response"); WriteResponse(w, answer, completed: true); });
            await output.FlushAsync(ctx.RequestAborted);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException && ctx.RequestAborted.IsCancellationRequested)
        {
            StandInStats.CountClientAbort();
        }
    }

    private sealed record Answer(string Id, string ItemId, long Created, string Model, string Reply, int InputTokens, int OutputTokens);

    private static void Position(Utf8JsonWriter w, Answer answer)
    {
        w.WriteString("item_id", answer.ItemId);
        w.WriteNumber("output_index", 0);
        w.WriteNumber("content_index", 0);
    }

    private static void WriteResponse(Utf8JsonWriter w, Answer answer, bool completed)
    {
        w.WriteStartObject();
        w.WriteString("id", answer.Id);
        w.WriteString("object", "response");
        w.WriteNumber("created_at", answer.Created);
        w.WriteString("status", completed ? "completed" : "in_progress");
        w.WriteNull("error");
        w.WriteNull("incomplete_details");
        w.WriteNull("instructions");
        w.WriteNull("max_output_tokens");
        w.WriteString("model", answer.Model);
        w.WriteStartArray("output");
        if (completed)
        {
            WriteMessage(w, answer, completed: true);
        }
        w.WriteEndArray();
        w.WriteBoolean("parallel_tool_calls", true);
        w.WriteNull("previous_response_id");
        w.WriteBoolean("store", true);
        w.WriteNumber("temperature", 1.0);
        w.WriteString("tool_choice", "auto");
        w.WriteStartArray("tools");
        w.WriteEndArray();
        w.WriteNumber("top_p", 1.0);
        w.WriteString("truncation", "disabled");
        if (completed)
        {
            w.WriteStartObject("usage");
            w.WriteNumber("input_tokens", answer.InputTokens);
            w.WriteStartObject("input_tokens_details");
            w.WriteNumber("cached_tokens", 0);
            w.WriteEndObject();
            w.WriteNumber("output_tokens", answer.OutputTokens);
            w.WriteStartObject("output_tokens_details");
            w.WriteNumber("reasoning_tokens", 0);
            w.WriteEndObject();
            w.WriteNumber("total_tokens", answer.InputTokens + answer.OutputTokens);
            w.WriteEndObject();
        }
        else
        {
            w.WriteNull("usage");
        }
        w.WriteNull("user");
        w.WriteStartObject("metadata");
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static void WriteMessage(Utf8JsonWriter w, Answer answer, bool completed)
    {
        w.WriteStartObject();
        w.WriteString("id", answer.ItemId);
        w.WriteString("type", "message");
        w.WriteString("status", completed ? "completed" : "in_progress");
        w.WriteString("role", "assistant");
        w.WriteStartArray("content");
        if (completed)
        {
            WriteText(w, answer.Reply);
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WriteText(Utf8JsonWriter w, string text)
    {
        w.WriteStartObject();
        w.WriteString("type", "output_text");
        w.WriteStartArray("annotations");
        w.WriteEndArray();
        w.WriteString("text", text);
        w.WriteEndObject();
    }
}
