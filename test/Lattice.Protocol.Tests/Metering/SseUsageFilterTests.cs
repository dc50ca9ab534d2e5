using System.Buffers;
using System.Text;
using Lattice.Protocol.Metering;

namespace Lattice.Protocol.Tests.Metering;

public sealed class SseUsageFilterTests
{
    private const string Head = "\"id\":\"chatcmpl-B9\",\"object\":\"chat.completion.chunk\",\"created\":1736000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_0aa8d3e20b\"";
    private const string UsageObject = "{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13,\"prompt_tokens_details\":{\"cached_tokens\":2,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}";
    private static readonly Usage Reported = new(9, 4, 13, CachedTokens: 2);

    // Deltas an OpenAI stream carries, including content that mentions the usage key (escaped or as a bare string).
    private static readonly string[] Choices =
    [
        "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}",
        "{\"index\":0,\"delta\":{\"content\":\"usage\"},\"logprobs\":null,\"finish_reason\":null}",
        "{\"index\":0,\"delta\":{\"content\":\" \\\"usage\\\":{\\\"a\\\":1}, \\\"usage\\\":null,\"},\"logprobs\":null,\"finish_reason\":null}",
        "{\"index\":0,\"delta\":{\"content\":\" héllo ✓\"},\"logprobs\":null,\"finish_reason\":null}",
        "{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}",
    ];

    public enum UsagePlace { Last, First, Middle }

    /// <summary>
    /// The stream OpenAI sends for the same answer with and without <c>stream_options.include_usage</c>: with it every
    /// chunk carries <c>"usage":null</c> and a chunk with empty choices and the usage comes before [DONE].
    /// </summary>
    private static string OpenAiStream(bool includeUsage, string newline = "\n", UsagePlace place = UsagePlace.Last)
    {
        var sb = new StringBuilder();
        foreach (string choice in Choices)
        {
            sb.Append(Event(Chunk(choice, includeUsage ? "null" : null, place), newline));
        }

        if (includeUsage)
        {
            sb.Append(Event(Chunk(null, UsageObject, place), newline));
        }

        sb.Append(Event("[DONE]", newline));
        return sb.ToString();
    }

    private static string Chunk(string? choice, string? usage, UsagePlace place)
    {
        string choices = "\"choices\":[" + choice + "]";
        if (usage is null)
        {
            return "{" + Head + "," + choices + "}";
        }

        string member = "\"usage\":" + usage;
        return place switch
        {
            UsagePlace.First => "{" + member + "," + Head + "," + choices + "}",
            UsagePlace.Middle => "{" + Head + "," + member + "," + choices + "}",
            _ => "{" + Head + "," + choices + "," + member + "}",
        };
    }

    private static string Event(string data, string newline) => "data: " + data + newline + newline;

    private static (string Output, SseUsageFilter Filter) Run(string stream, bool strip, params int[] cuts)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(stream);
        var output = new ArrayBufferWriter<byte>();
        var filter = new SseUsageFilter(strip, keepWrittenBytes: 1 << 20);
        int from = 0;
        foreach (int cut in cuts.Append(bytes.Length))
        {
            filter.Push(bytes.AsSpan(from, cut - from), output);
            from = cut;
        }

        Assert.True(filter.Pending.IsEmpty);
        Assert.Equal(output.WrittenSpan.ToArray(), filter.Written.ToArray());
        return (Encoding.UTF8.GetString(output.WrittenSpan), filter);
    }

    [Theory]
    [InlineData("\n")]
    [InlineData("\r\n")]
    public void Without_strip_every_event_passes_unchanged_and_the_usage_is_read(string newline)
    {
        string stream = OpenAiStream(includeUsage: true, newline);
        var (output, filter) = Run(stream, strip: false);
        Assert.Equal(stream, output);
        Assert.Equal(Reported, filter.Usage);
        Assert.True(filter.SawDone);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_stream_without_usage_passes_unchanged_and_reports_none(bool strip)
    {
        string stream = OpenAiStream(includeUsage: false);
        var (output, filter) = Run(stream, strip);
        Assert.Equal(stream, output);
        Assert.Null(filter.Usage);
        Assert.True(filter.SawDone);
    }

    [Theory]
    [InlineData("\n", UsagePlace.Last)]
    [InlineData("\r\n", UsagePlace.Last)]
    [InlineData("\n", UsagePlace.First)]
    [InlineData("\r\n", UsagePlace.Middle)]
    public void Strip_mode_gives_the_client_exactly_the_stream_it_would_have_got_without_include_usage(string newline, UsagePlace place)
    {
        var (output, filter) = Run(OpenAiStream(includeUsage: true, newline, place), strip: true);
        Assert.Equal(OpenAiStream(includeUsage: false, newline), output);
        Assert.Equal(Reported, filter.Usage);
        Assert.True(filter.SawDone);
    }

    [Theory]
    [InlineData(false, "\n")]
    [InlineData(true, "\n")]
    [InlineData(true, "\r\n")]
    public void Splitting_the_stream_at_any_byte_changes_nothing(bool strip, string newline)
    {
        string stream = OpenAiStream(includeUsage: true, newline);
        var (whole, reference) = Run(stream, strip);
        int length = Encoding.UTF8.GetByteCount(stream);
        for (int cut = 0; cut <= length; cut++)
        {
            var (output, filter) = Run(stream, strip, cut);
            Assert.Equal(whole, output);
            Assert.Equal(reference.Usage, filter.Usage);
            Assert.True(filter.SawDone);
        }
    }

    [Fact]
    public void Byte_by_byte_reads_change_nothing()
    {
        string stream = OpenAiStream(includeUsage: true, "\r\n");
        int length = Encoding.UTF8.GetByteCount(stream);
        var (output, filter) = Run(stream, strip: true, Enumerable.Range(1, length - 1).ToArray());
        Assert.Equal(OpenAiStream(includeUsage: false, "\r\n"), output);
        Assert.Equal(Reported, filter.Usage);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Every_event_names_the_model_the_client_asked_for_at_any_split(bool strip)
    {
        string stream = OpenAiStream(includeUsage: true) + "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\",\"content\":[]}}\n\n";
        string expected = (strip ? OpenAiStream(includeUsage: false) : OpenAiStream(includeUsage: true))
            .Replace("\"model\":\"gpt-4o-mini-2024-07-18\"", "\"model\":\"lovelace:chat\"", StringComparison.Ordinal)
            + "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"lovelace:chat\",\"content\":[]}}\n\n";
        byte[] bytes = Encoding.UTF8.GetBytes(stream);
        for (int cut = 0; cut <= bytes.Length; cut++)
        {
            var output = new ArrayBufferWriter<byte>();
            using var filter = new SseUsageFilter(strip, keepWrittenBytes: 1 << 20, model: ModelFieldRewriter.Quote("lovelace:chat"));
            filter.Push(bytes.AsSpan(0, cut), output);
            filter.Push(bytes.AsSpan(cut), output);
            Assert.Equal(expected, Encoding.UTF8.GetString(output.WrittenSpan));
            Assert.Equal(Reported, filter.Usage);
            Assert.True(filter.SawDone);
        }
    }

    [Theory]
    // OpenAI-shaped chunks: the value is spliced after two searches.
    [InlineData("""data: {"id":"c1","created":1,"model":"gpt-x","choices":[{"delta":{"content":"hi"}}]}""",
                """data: {"id":"c1","created":1,"model":"lovelace:chat","choices":[{"delta":{"content":"hi"}}]}""")]
    [InlineData("""data: {"id":"c1","model":"gpt-x","choices":[{"delta":{"content":"say \"model\":\"y\""}}]}""",
                """data: {"id":"c1","model":"lovelace:chat","choices":[{"delta":{"content":"say \"model\":\"y\""}}]}""")]
    // A text ending in "model" after the member, a nested prefix, spaces, an escape in the prefix: the scanner decides.
    [InlineData("""data: {"model":"gpt-x","choices":[{"delta":{"content":"a model"}}]}""",
                """data: {"model":"lovelace:chat","choices":[{"delta":{"content":"a model"}}]}""")]
    [InlineData("""data: {"meta":{"model":"inner"},"model":"gpt-x"}""",
                """data: {"meta":{"model":"lovelace:chat"},"model":"lovelace:chat"}""")]
    [InlineData("""data: {"id":"x\"y","model" : "gpt-x"}""",
                """data: {"id":"x\"y","model" : "lovelace:chat"}""")]
    [InlineData("""data: {"a":[{"b":{"c":{"model":"deep"}}}],"model":null}""",
                """data: {"a":[{"b":{"c":{"model":"deep"}}}],"model":null}""")]
    public void The_model_member_is_replaced_by_splice_or_by_the_scanner_alike(string sent, string expected)
    {
        var output = new ArrayBufferWriter<byte>();
        using var filter = new SseUsageFilter(model: ModelFieldRewriter.Quote("lovelace:chat"));
        filter.Push(Encoding.UTF8.GetBytes(sent + "\n\n"), output);
        Assert.Equal(expected + "\n\n", Encoding.UTF8.GetString(output.WrittenSpan));
    }

    [Fact]
    public void A_partial_event_is_held_until_its_blank_line_arrives()
    {
        var output = new ArrayBufferWriter<byte>();
        using var filter = new SseUsageFilter();
        filter.Push("data: {\"a\":1}\n\ndata: {\"b\""u8, output);
        Assert.Equal("data: {\"a\":1}\n\n", Encoding.UTF8.GetString(output.WrittenSpan));
        Assert.Equal("data: {\"b\"", Encoding.UTF8.GetString(filter.Pending));

        filter.Push(":2}\n"u8, output);
        Assert.Equal("data: {\"b\":2}\n", Encoding.UTF8.GetString(filter.Pending));
        filter.Push("\n"u8, output);
        Assert.Equal("data: {\"a\":1}\n\ndata: {\"b\":2}\n\n", Encoding.UTF8.GetString(output.WrittenSpan));
        Assert.True(filter.Pending.IsEmpty);
        Assert.False(filter.SawDone);
    }

    [Fact]
    public void Flush_forwards_an_unfinished_last_event_unchanged()
    {
        var output = new ArrayBufferWriter<byte>();
        using var filter = new SseUsageFilter(stripInjectedUsage: true);
        filter.Push("data: {\"choices\":[],\"usage\":null}"u8, output);
        Assert.Equal(0, output.WrittenCount);
        filter.Flush(output);
        Assert.Equal("data: {\"choices\":[],\"usage\":null}", Encoding.UTF8.GetString(output.WrittenSpan));
        Assert.True(filter.Pending.IsEmpty);
    }

    [Fact]
    public void The_last_usage_object_wins()
    {
        string stream = Event("{\"choices\":[],\"usage\":{\"prompt_tokens\":1}}", "\n") + Event("{\"choices\":[],\"usage\":{\"prompt_tokens\":2}}", "\n")
            + Event("{\"choices\":[],\"usage\":null}", "\n");
        var (_, filter) = Run(stream, strip: false);
        Assert.Equal(new Usage(2, 0, 2), filter.Usage);
    }

    [Theory]
    [InlineData("{\"x\":{\"usage\":null},\"usage\":{\"prompt_tokens\":1}}")]
    [InlineData("{\"note\":\"usage\",\"usage\" : {\"prompt_tokens\":1}}")]
    [InlineData("{\"kind\":\"usage\",\"x\":{\"usage\":{\"prompt_tokens\":7}},\"usage\":{\"prompt_tokens\":1}}")]
    public void The_usage_is_found_after_other_mentions_of_its_key(string chunk)
    {
        string stream = Event(chunk, "\n");
        var (output, filter) = Run(stream, strip: false);
        Assert.Equal(stream, output);
        Assert.Equal(new Usage(1, 0, 1), filter.Usage);
    }

    [Fact]
    public void In_strip_mode_a_usage_object_on_a_chunk_with_choices_is_cut_but_the_chunk_kept()
    {
        string stream = Event("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}", "\n");
        var (output, filter) = Run(stream, strip: true);
        Assert.Equal(Event("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}", "\n"), output);
        Assert.Equal(new Usage(3, 1, 4), filter.Usage);
    }

    [Theory]
    [InlineData("{\"a\":1, \"usage\" : null }", "{\"a\":1 }")]
    [InlineData("{ \"usage\": null, \"a\":1}", "{ \"a\":1}")]
    [InlineData("{\"usage\":null}", "{}")]
    [InlineData("{\"x\":{\"usage\":null},\"usage\":null}", "{\"x\":{\"usage\":null}}")]
    [InlineData("{\"x\":{\"a\":1,\"usage\":null},\"y\":2}", "{\"x\":{\"a\":1,\"usage\":null},\"y\":2}")]
    [InlineData("{\"choices\":[],\"x\":{\"a\":1,\"usage\":null}}", "{\"choices\":[],\"x\":{\"a\":1,\"usage\":null}}")]
    // Usage objects of odd shapes, read in the pass that finds the cut: they must neither move the cut nor read
    // differently from UsageReader on its own (which reads the first top-level usage member).
    [InlineData("{\"choices\":[{\"index\":0}],\"usage\":{\"total_tokens\":{\"x\":1},\"prompt_tokens\":3},\"y\":1}", "{\"choices\":[{\"index\":0}],\"y\":1}")]
    [InlineData("{\"choices\":[{\"index\":0}],\"usage\":{\"seconds\":[1,{\"a\":2}],\"prompt_tokens\":3}}", "{\"choices\":[{\"index\":0}]}")]
    [InlineData("{\"usage\":{\"prompt_tokens\":5},\"choices\":[{\"index\":0}],\"usage\":{\"prompt_tokens\":6}}", "{\"usage\":{\"prompt_tokens\":5},\"choices\":[{\"index\":0}]}")]
    public void Strip_mode_cuts_only_the_top_level_member_and_its_comma(string chunk, string expected)
    {
        var (output, filter) = Run(Event(chunk, "\n"), strip: true);
        Assert.Equal(Event(expected, "\n"), output);
        Assert.Equal(UsageReader.TryRead(Encoding.UTF8.GetBytes(chunk), "usage", "tokens", out var alone) ? alone : null, filter.Usage);
    }

    [Fact]
    public void Events_that_are_not_json_pass_unchanged_in_strip_mode()
    {
        string stream = ": comment with \"usage\"\n\nevent: ping\ndata: \"usage\" is a word\n\n\ndata: [DONE]\n\n";
        var (output, filter) = Run(stream, strip: true);
        Assert.Equal(stream, output);
        Assert.Null(filter.Usage);
        Assert.True(filter.SawDone);
    }

    [Fact]
    public void Written_keeps_whole_events_up_to_the_cap()
    {
        string stream = OpenAiStream(includeUsage: false);
        byte[] bytes = Encoding.UTF8.GetBytes(stream);
        int firstEvent = stream.IndexOf("\n\n", StringComparison.Ordinal) + 2;
        var output = new ArrayBufferWriter<byte>();
        using var filter = new SseUsageFilter(keepWrittenBytes: firstEvent + 10);
        filter.Push(bytes, output);
        Assert.Equal(bytes, output.WrittenSpan.ToArray());
        Assert.Equal(bytes[..firstEvent], filter.Written.ToArray());
        Assert.True(filter.WrittenTruncated);

        using var none = new SseUsageFilter();
        none.Push(bytes, output);
        Assert.True(none.Written.IsEmpty);
        Assert.False(none.WrittenTruncated);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Forwarding_allocates_nothing_per_event(bool strip)
    {
        byte[] stream = Encoding.UTF8.GetBytes(OpenAiStream(includeUsage: strip));
        var output = new ArrayBufferWriter<byte>(stream.Length * 4);
        using var filter = new SseUsageFilter(strip);

        void Once()
        {
            output.ResetWrittenCount();
            // Two reads that split events, so the held-event path runs too.
            filter.Push(stream.AsSpan(0, stream.Length / 3), output);
            filter.Push(stream.AsSpan(stream.Length / 3), output);
        }

        Once();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 200; i++)
        {
            Once();
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(strip ? Reported : null, filter.Usage);
    }
}
