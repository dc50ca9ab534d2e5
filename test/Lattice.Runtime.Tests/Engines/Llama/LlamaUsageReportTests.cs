using System.Text;
using Lattice.Runtime.Engines;
using Lattice.Runtime.Engines.Llama;

namespace Lattice.Runtime.Tests.Engines.Llama;

/// <summary>The usage the llama engine reports as it goes: what a cancelled request is metered for.</summary>
public sealed class LlamaUsageReportTests(LlamaEngineFixture fixture) : IClassFixture<LlamaEngineFixture>
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task The_last_report_of_a_finished_request_is_its_usage(bool stream)
    {
        var body = LlamaEngineFixture.UserRequest("Once upon a time", maxTokens: 12);
        body["stream"] = stream;
        var (output, usage) = await fixture.RunAsync(body);

        Assert.Equal(usage, output.LastReportedUsage);
        // The prompt once, then every token.
        Assert.Equal(usage.CompletionTokens + 1, output.UsageReports);
    }

    [Fact]
    public async Task A_cancelled_request_throws_and_has_reported_its_prompt_and_the_tokens_generated()
    {
        var body = LlamaEngineFixture.UserRequest("Once upon a time", maxTokens: null);
        body["model"] = LlamaEngineFixture.ModelName;
        body["stream"] = true;
        var request = new EngineRequest(LlamaEngine.ChatCompletionsTask, LlamaEngineFixture.ModelName, Encoding.UTF8.GetBytes(body.ToJsonString()), "application/json", true);
        var (_, full) = await fixture.RunAsync(LlamaEngineFixture.UserRequest("Once upon a time", maxTokens: 1));
        using var cts = new CancellationTokenSource();
        var output = new CancelAtWriteOutput(cts, cancelAtWrite: 4); // role chunk + 3 content chunks

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => fixture.Engine.ExecuteAsync(request, output, cts.Token));

        Assert.Equal(full.PromptTokens, output.Recording.LastReportedUsage.PromptTokens);
        // The third content chunk's token was being written when the cancel came.
        Assert.Equal(3, output.Recording.LastReportedUsage.CompletionTokens);
    }

    /// <summary>Records, and cancels the request during the given write (which then fails, as a link's would).</summary>
    private sealed class CancelAtWriteOutput(CancellationTokenSource cts, int cancelAtWrite) : IEngineOutput
    {
        private int _writes;

        public RecordingOutput Recording { get; } = new();

        public ValueTask StartAsync(int status, string contentType, CancellationToken cancellationToken) =>
            Recording.StartAsync(status, contentType, cancellationToken);

        public void ReportUsage(EngineUsage usageSoFar) => Recording.ReportUsage(usageSoFar);

        public ValueTask WriteAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken)
        {
            if (++_writes == cancelAtWrite)
            {
                cts.Cancel();
            }
            cancellationToken.ThrowIfCancellationRequested();
            return Recording.WriteAsync(bytes, cancellationToken);
        }
    }
}
