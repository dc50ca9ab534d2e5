using System.Buffers.Binary;
using System.Text;
using Lattice.Protocol.Runtime;

namespace Lattice.Protocol.Tests.Runtime;

public sealed class DispatchFrameTests
{
    private static byte[] Payload(string headerJson, string body = "")
    {
        var header = Encoding.UTF8.GetBytes(headerJson);
        var payload = new byte[2 + header.Length + body.Length];
        BinaryPrimitives.WriteUInt16LittleEndian(payload, (ushort)header.Length);
        header.CopyTo(payload, 2);
        Encoding.UTF8.GetBytes(body).CopyTo(payload, 2 + header.Length);
        return payload;
    }

    [Fact]
    public void A_complete_header_is_read_with_its_body()
    {
        Assert.True(Frame.TryReadDispatch(Payload("""{"task":"embeddings","model":"m","content_type":"application/json","stream":false}""", "{}"), out var header, out var body));
        Assert.Equal(new DispatchHeader("embeddings", "m", "application/json", false), header);
        Assert.Equal("{}", Encoding.UTF8.GetString(body.Span));
    }

    // Found by FrameFuzzTests (a mutated "content_type" name): a header missing a field, or with a null one, was
    // accepted with null members, which the daemon then used as lookup keys. It is malformed: invalid_dispatch.
    [Theory]
    [InlineData("""{"task":"chat.completions","model":"m","stream":true}""")]
    [InlineData("""{"task":"chat.completions","model":"m","content\u007F_type":"application/json","stream":true}""")]
    [InlineData("""{"task":null,"model":"m","content_type":"application/json","stream":false}""")]
    [InlineData("""{"model":"m","content_type":"application/json"}""")]
    [InlineData("""{"task":"t","content_type":"application/json"}""")]
    [InlineData("""{}""")]
    [InlineData("""null""")]
    public void A_header_without_task_model_or_content_type_is_refused(string json)
    {
        Assert.False(Frame.TryReadDispatch(Payload(json), out var header, out var body));
        Assert.Null(header);
        Assert.True(body.IsEmpty);
    }

    [Fact]
    public void A_header_length_past_the_payload_is_refused() =>
        Assert.False(Frame.TryReadDispatch(new byte[] { 0xFF, 0xFF, (byte)'{', (byte)'}' }, out _, out _));
}
