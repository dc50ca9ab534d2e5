using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Lattice.Gateway.Tasks;
using Lattice.Protocol.Metering;

namespace Lattice.Gateway.Upstreams;

/// <summary>
/// The client's JSON bytes with only the value of <c>model</c> replaced (and, for a metered stream, one splice that
/// asks for the usage chunk), written as slices of the original buffer — no re-serialisation, no copy of the body.
/// </summary>
internal sealed class SplicedJsonContent : HttpContent
{
    private readonly TaskInput _input;
    // At most two splices, in byte order.
    private readonly JsonSplice[] _splices;

    public SplicedJsonContent(TaskInput input, string upstreamModel, JsonSplice? extra = null)
    {
        _input = input;
        var model = input.ModelValueStart < 0
            ? (JsonSplice?)null
            : new JsonSplice(input.ModelValueStart, input.ModelValueLength, JsonSerializer.SerializeToUtf8Bytes(upstreamModel, UpstreamJsonContext.Default.String));
        _splices = (model, extra) switch
        {
            ({ } m, { } e) => m.Offset <= e.Offset ? [m, e] : [e, m],
            ({ } m, null) => [m],
            (null, { } e) => [e],
            _ => [],
        };
        Headers.ContentType = new MediaTypeHeaderValue("application/json");
    }

    protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
    {
        var body = _input.Body.AsMemory(0, _input.Length);
        var at = 0;
        foreach (var splice in _splices)
        {
            await stream.WriteAsync(body[at..splice.Offset], cancellationToken);
            await stream.WriteAsync(splice.Replacement, cancellationToken);
            at = splice.Offset + splice.Length;
        }
        await stream.WriteAsync(body[at..], cancellationToken);
    }

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
        SerializeToStreamAsync(stream, context, CancellationToken.None);

    protected override bool TryComputeLength(out long length)
    {
        length = _input.Length;
        foreach (var splice in _splices)
        {
            length += splice.Replacement.Length - splice.Length;
        }
        return true;
    }
}

/// <summary>Rebuilds a multipart body with the same boundary and section headers, only the <c>model</c> field's value replaced.</summary>
internal static class MultipartBody
{
    public static ByteArrayContent Build(TaskInput input, string upstreamModel)
    {
        using var ms = new MemoryStream(input.Length + 64);
        var boundary = Encoding.ASCII.GetBytes("--" + input.Boundary);
        foreach (var part in input.Parts!)
        {
            ms.Write(boundary);
            ms.Write("\r\n"u8);
            foreach (var (name, value) in part.Headers)
            {
                ms.Write(Encoding.UTF8.GetBytes(name));
                ms.Write(": "u8);
                ms.Write(Encoding.UTF8.GetBytes(value));
                ms.Write("\r\n"u8);
            }
            ms.Write("\r\n"u8);
            ms.Write(part.Name == "model" ? Encoding.UTF8.GetBytes(upstreamModel) : part.Content);
            ms.Write("\r\n"u8);
        }
        ms.Write(boundary);
        ms.Write("--\r\n"u8);
        var content = new ByteArrayContent(ms.GetBuffer(), 0, (int)ms.Length);
        content.Headers.TryAddWithoutValidation("Content-Type", input.ContentType);
        return content;
    }
}

[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
internal sealed partial class UpstreamJsonContext : System.Text.Json.Serialization.JsonSerializerContext;
