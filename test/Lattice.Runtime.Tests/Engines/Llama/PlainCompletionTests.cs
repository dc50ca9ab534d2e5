using System.Text;
using System.Text.Json.Nodes;
using Lattice.Runtime.Engines;
using Lattice.Runtime.Engines.Llama;
using Lattice.Runtime.Hosting;

namespace Lattice.Runtime.Tests.Engines.Llama;

/// <summary>
/// stories260K was trained on plain stories, never on chat turns: served as a plain completion model, a chat request is
/// prompted with its messages' text alone, and "Once upon a time" is continued as the story the model learned.
/// </summary>
public sealed class PlainCompletionTests
{
    private static readonly IProgress<double> NoProgress = new Progress<double>();

    private static Task<LlamaModel> LoadAsync(bool plain) => LlamaModel.LoadAsync(
        new LlamaModelOptions { Name = "stories", Path = LlamaEngineFixture.ModelPath, PlainCompletion = plain }, NoProgress, CancellationToken.None);

    [Fact]
    public async Task The_prompt_of_a_plain_completion_model_is_the_messages_text_without_template_markers()
    {
        using var plain = await LoadAsync(plain: true);
        Assert.True(plain.PlainCompletion);
        Assert.Equal("Once upon a time", plain.BuildPrompt([new ChatMessage("user", "Once upon a time")]));
        Assert.Equal("Lily had a ball. Once upon a time", plain.BuildPrompt(
            [new ChatMessage("system", "Lily had a ball. "), new ChatMessage("user", "Once upon a time")]));
        // Text that looks like a special token is text: the prompt is the client's words, tokenized as such.
        var tokens = plain.TokenizePrompt("<|im_start|>");
        Assert.True(tokens.Length > 2, $"{tokens.Length} tokens");

        // The same file served as a chat model wraps the turns in its (ChatML) template.
        using var chat = await LoadAsync(plain: false);
        Assert.False(chat.PlainCompletion);
        var templated = chat.BuildPrompt([new ChatMessage("user", "Once upon a time")]);
        Assert.Contains("<|im_start|>user\nOnce upon a time<|im_end|>", templated, StringComparison.Ordinal);
        Assert.EndsWith("<|im_start|>assistant\n", templated, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_chat_request_to_the_bundled_story_model_continues_the_story()
    {
        // Served as `lattice up` serves it.
        var bundled = Assert.Single(BundledModels.Engines, e => e.Kind == "llama").Models[0];
        Assert.True(bundled.PlainCompletion);
        await using var engine = new LlamaEngine(new LlamaEngineOptions
        {
            Models = [new LlamaModelOptions { Name = "stories", Path = LlamaEngineFixture.ModelPath, PlainCompletion = bundled.PlainCompletion }],
        });
        await engine.LoadAsync(null, CancellationToken.None);

        var body = LlamaEngineFixture.UserRequest("Once upon a time", maxTokens: 30);
        body["model"] = "stories";
        var output = new RecordingOutput();
        var usage = await engine.ExecuteAsync(new EngineRequest(LlamaEngine.ChatCompletionsTask, "stories",
            Encoding.UTF8.GetBytes(body.ToJsonString()), "application/json", false), output, CancellationToken.None);

        Assert.Equal(200, output.Status);
        var content = JsonNode.Parse(output.Text)!["choices"]![0]!["message"]!["content"]!.GetValue<string>();
        // llama2.c's own greedy continuation of "Once upon a time" (doc/stories260K.md).
        Assert.StartsWith(", there was a little girl named Lily. She loved to play outside in the park.", content, StringComparison.Ordinal);
        Assert.Equal(30, usage.CompletionTokens);
    }
}
