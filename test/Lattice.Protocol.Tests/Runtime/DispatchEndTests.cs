using System.Text;
using Lattice.Protocol.Runtime;

namespace Lattice.Protocol.Tests.Runtime;

/// <summary>The End frame's usage JSON stays readable both ways between old and new peers.</summary>
public sealed class DispatchEndTests
{
    private static string Write(DispatchEnd end) =>
        Encoding.UTF8.GetString(Frame.Json(FrameType.End, 1, end, ProtocolJsonContext.Default.DispatchEnd).AsSpan(Frame.HeaderSize));

    private static DispatchEnd? Read(string json) => Frame.ReadJson(Encoding.UTF8.GetBytes(json), ProtocolJsonContext.Default.DispatchEnd);

    [Fact]
    public void A_plain_end_is_written_as_before_the_new_fields()
    {
        Assert.Equal("""{"prompt_tokens":3,"completion_tokens":4,"audio_seconds":1.5}""", Write(new DispatchEnd(3, 4, 1.5)));
    }

    [Fact]
    public void The_new_fields_are_written_in_snake_case_when_set()
    {
        Assert.Equal(
            """{"prompt_tokens":3,"completion_tokens":4,"audio_seconds":0,"cached_tokens":2,"estimated":true,"cancelled":true}""",
            Write(new DispatchEnd(3, 4, 0, CachedTokens: 2, Estimated: true, Cancelled: true)));
    }

    [Fact]
    public void An_end_from_an_older_daemon_reads_with_the_new_fields_defaulted()
    {
        Assert.Equal(new DispatchEnd(3, 4, 0), Read("""{"prompt_tokens":3,"completion_tokens":4,"audio_seconds":0}"""));
    }

    [Fact]
    public void Every_field_round_trips()
    {
        var end = new DispatchEnd(3, 4, 2.25, 1, true, true);
        Assert.Equal(end, Read(Write(end)));
    }

    [Fact]
    public void A_hello_without_features_reads_as_none_and_features_are_listed_when_set()
    {
        var old = Frame.ReadJson("""{"runtime_version":"1","max_concurrency":2,"capabilities":[]}"""u8.ToArray(), ProtocolJsonContext.Default.HelloMessage)!;
        Assert.Null(old.Features);
        var hello = new HelloMessage("1", 2, [], [LinkFeatures.EndAfterCancel]);
        var json = Encoding.UTF8.GetString(Frame.Json(FrameType.Hello, 0, hello, ProtocolJsonContext.Default.HelloMessage).AsSpan(Frame.HeaderSize));
        Assert.Equal("""{"runtime_version":"1","max_concurrency":2,"capabilities":[],"features":["end_after_cancel"]}""", json);
    }
}
