using System.Text;
using Lattice.Protocol.Runtime;

namespace Lattice.Protocol.Tests.Runtime;

/// <summary>The credit frame and the hello/welcome fields of flow control, byte for byte, and readable by older peers' rules.</summary>
public sealed class FlowControlFrameTests
{
    [Fact]
    public void A_credit_frame_is_its_header_and_a_little_endian_uint32()
    {
        Assert.Equal(new byte[] { 0x16, 7, 0, 0, 0, 0x00, 0x00, 0x01, 0x00 }, Frame.Credit(7, 65536));
        Assert.True(Frame.TryReadCredit(new byte[] { 0x00, 0x00, 0x01, 0x00 }, out var bytes));
        Assert.Equal(65536u, bytes);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    [InlineData(5)]
    public void A_credit_payload_of_any_other_length_is_refused(int length)
    {
        Assert.False(Frame.TryReadCredit(new byte[length], out var bytes));
        Assert.Equal(0u, bytes);
    }

    [Fact]
    public void Hello_and_welcome_carry_the_limits_only_when_set()
    {
        static string Json<T>(T message, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) =>
            Encoding.UTF8.GetString(Frame.Json(FrameType.Hello, 0, message, type).AsSpan(Frame.HeaderSize));

        Assert.Equal("""{"runtime_version":"1","max_concurrency":2,"capabilities":[],"features":["flow_control"],"max_frame_bytes":67108864}""",
            Json(new HelloMessage("1", 2, [], [LinkFeatures.FlowControl], Frame.MaxFrameBytes), ProtocolJsonContext.Default.HelloMessage));
        Assert.Equal("""{"lattice_id":"lat_1","heartbeat_seconds":5,"max_frame_bytes":262144,"window_bytes":262144}""",
            Json(new WelcomeMessage("lat_1", 5, 262144, 262144), ProtocolJsonContext.Default.WelcomeMessage));
        // What an older gateway sends: no limits, so the daemon keeps no credit.
        Assert.Equal(new WelcomeMessage("lat_1", 5),
            Frame.ReadJson("""{"lattice_id":"lat_1","heartbeat_seconds":5}"""u8.ToArray(), ProtocolJsonContext.Default.WelcomeMessage));
    }
}
