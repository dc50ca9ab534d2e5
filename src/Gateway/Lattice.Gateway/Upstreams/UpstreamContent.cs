using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Lattice.Gateway.Tasks;

namespace Lattice.Gateway.Upstreams;

/// <summary>
/// The client's JSON bytes with only the value of <c>model</c> replaced, written as three slices of the original
/// buffer — no re-serialisation, no copy of the body.
/// </summary>
internal sealed class SplicedJsonContent : HttpContent
{
    private readonly TaskInput _input;
    private readonly byte[] _modelToken;

    public SplicedJsonContent(TaskInput input, string upstreamModel)
    {
        _input = input;
        _modelToken = JsonSerializer.SerializeToUtf8Bytes(upstreamModel, UpstreamJsonContext.Default.String);
        Headers.ContentType = new MediaTypeHeaderValue("application/json");
    }

    protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
    {
        var body = _input.Body.AsMemory(0, _input.Length);
        if (_input.ModelValueStart < 0)
        {
            await stream.WriteAsync(body, cancellationToken);
            return;
        }
        await stream.WriteAsync(body[.._input.ModelValueStart], cancellationToken);
        await stream.WriteAsync(_modelToken, cancellationToken);
        await stream.WriteAsync(body[(_input.ModelValueStart + _input.ModelValueLength)..], cancellationToken);
    }

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
        SerializeToStreamAsync(stream, context, CancellationToken.None);

    protected override bool TryComputeLength(out long length)
    {
        length = _input.ModelValueStart < 0 ? _input.Length : _input.Length - _input.ModelValueLength + _modelToken.Length;
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
