using System.ClientModel;
using System.Text;
using System.Text.Json;
using Lattice.Testing;
using OpenAI;
using OpenAI.Audio;
using OpenAI.Chat;
using OpenAI.Embeddings;

namespace Lattice.EndToEnd.Tests;

/// <summary>The official OpenAI .NET SDK, unmodified, against the real gateway process.</summary>
[Collection(StackCollection.Name)]
public sealed class OpenAiDotnetSdkTests(StackFixture stack)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private OpenAIClient Client(string? key = null, string? baseUrl = null) =>
        new(new ApiKeyCredential(key ?? stack.ApiKey), new OpenAIClientOptions { Endpoint = new Uri(baseUrl ?? stack.BaseUrl), NetworkTimeout = Timeout });

    [Fact]
    public async Task Chat_completion()
    {
        var chat = Client().GetChatClient("lovelace:chat");
        ChatCompletion completion = await chat.CompleteChatAsync([new SystemChatMessage("be brief"), new UserChatMessage("hello from dotnet")]).WaitAsync(Timeout);
        Assert.Equal("You said: hello from dotnet", completion.Content[0].Text);
        Assert.Equal(ChatFinishReason.Stop, completion.FinishReason);
        Assert.Equal(ChatMessageRole.Assistant, completion.Role);
        Assert.Equal(10, completion.Usage.TotalTokenCount);
    }

    [Fact]
    public async Task Streaming_chat_with_usage()
    {
        var chat = Client().GetChatClient("lovelace:chat");
        var text = new StringBuilder();
        var ids = new HashSet<string>();
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        await foreach (var update in chat.CompleteChatStreamingAsync([new UserChatMessage("stream this please")]).WithCancellation(new CancellationTokenSource(Timeout).Token))
        {
            ids.Add(update.CompletionId);
            foreach (var part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }
            usage ??= update.Usage;
            finish ??= update.FinishReason;
        }
        Assert.Equal("You said: stream this please", text.ToString());
        Assert.Single(ids);
        Assert.Equal(ChatFinishReason.Stop, finish);
        Assert.NotNull(usage);
        Assert.Equal(3, usage.InputTokenCount);
        Assert.Equal(5, usage.OutputTokenCount);
    }

    [Fact]
    public async Task Tools_are_passed_through()
    {
        var chat = Client().GetChatClient("lovelace:chat");
        var options = new ChatCompletionOptions
        {
            Tools = { ChatTool.CreateFunctionTool("get_weather", "Weather for a city", BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string"}}}""")) },
            ToolChoice = ChatToolChoice.CreateFunctionChoice("get_weather"),
            Seed = 7,
            MaxOutputTokenCount = 100,
            Temperature = 0.5f,
            EndUserId = "user-1",
        };
        ChatCompletion completion = await chat.CompleteChatAsync([new UserChatMessage("Paris")], options).WaitAsync(Timeout);
        Assert.Equal(ChatFinishReason.ToolCalls, completion.FinishReason);
        var call = Assert.Single(completion.ToolCalls);
        Assert.Equal("get_weather", call.FunctionName);
        Assert.Equal("""{"echo":"Paris"}""", call.FunctionArguments.ToString());
    }

    [Fact]
    public async Task Embeddings_base64_as_the_sdk_asks_by_default()
    {
        var client = Client().GetEmbeddingClient("lovelace:embed");
        OpenAIEmbedding embedding = await client.GenerateEmbeddingAsync("a cat", new EmbeddingGenerationOptions { Dimensions = 4 }).WaitAsync(Timeout);
        var floats = embedding.ToFloats().ToArray();
        Assert.Equal(4, floats.Length);
        Assert.Equal(1.0, Math.Sqrt(floats.Sum(f => (double)f * f)), 4);

        OpenAIEmbeddingCollection batch = await client.GenerateEmbeddingsAsync(["one", "two", "three"]).WaitAsync(Timeout);
        Assert.Equal(3, batch.Count);
        Assert.Equal([0, 1, 2], batch.Select(e => e.Index));
    }

    [Fact]
    public async Task Embeddings_float_through_the_protocol_method()
    {
        var client = Client().GetEmbeddingClient("lovelace:embed");
        var result = await client.GenerateEmbeddingsAsync(BinaryContent.Create(BinaryData.FromString("""{"model":"lovelace:embed","input":"a cat","encoding_format":"float"}"""))).WaitAsync(Timeout);
        var json = result.GetRawResponse().Content.ToString();
        OpenApiContract.AssertValid("CreateEmbeddingResponse", json);
        using var doc = JsonDocument.Parse(json);
        Assert.Equal(8, doc.RootElement.GetProperty("data")[0].GetProperty("embedding").GetArrayLength());
    }

    [Theory]
    [InlineData("json")]
    [InlineData("text")]
    [InlineData("srt")]
    [InlineData("vtt")]
    [InlineData("verbose_json")]
    public async Task Transcription_in_every_response_format(string format)
    {
        var audio = Client().GetAudioClient("lovelace:whisper");
        var options = new AudioTranscriptionOptions
        {
            ResponseFormat = format switch
            {
                "json" => AudioTranscriptionFormat.Simple,
                "text" => AudioTranscriptionFormat.Text,
                "srt" => AudioTranscriptionFormat.Srt,
                "vtt" => AudioTranscriptionFormat.Vtt,
                _ => AudioTranscriptionFormat.Verbose,
            },
            Language = "en",
            Prompt = "a greeting",
            Temperature = 0.1f,
            TimestampGranularities = format == "verbose_json" ? AudioTimestampGranularities.Word | AudioTimestampGranularities.Segment : AudioTimestampGranularities.Default,
        };
        using var wav = new MemoryStream(Wav.Silence(16000, 0.25));
        AudioTranscription transcription = await audio.TranscribeAudioAsync(wav, "héllo.wav", options).WaitAsync(Timeout);
        switch (format)
        {
            case "json":
            case "text":
                Assert.Equal("Hello from the stand-in.", transcription.Text.TrimEnd('\n'));
                break;
            case "srt":
                Assert.Contains("00:00:00,000 --> 00:00:01,000", transcription.Text, StringComparison.Ordinal);
                break;
            case "vtt":
                Assert.StartsWith("WEBVTT", transcription.Text, StringComparison.Ordinal);
                break;
            default:
                Assert.Equal("Hello from the stand-in.", transcription.Text);
                Assert.Equal(2, transcription.Segments.Count);
                Assert.NotEmpty(transcription.Words);
                Assert.Equal(TimeSpan.FromSeconds(2), transcription.Duration);
                break;
        }
    }

    [Fact]
    public async Task Models_list_and_retrieve_with_a_colon_in_the_id()
    {
        var models = Client().GetOpenAIModelClient();
        var list = await models.GetModelsAsync().WaitAsync(Timeout);
        Assert.Contains(list.Value, m => m.Id == "lovelace:chat" && m.OwnedBy == "e2e");
        var one = await models.GetModelAsync("lovelace:chat").WaitAsync(Timeout);
        Assert.Equal("lovelace:chat", one.Value.Id);
    }

    [Fact]
    public async Task Groq_style_base_url_works_too()
    {
        var chat = Client(baseUrl: stack.BaseUrl.Replace("/v1", "/openai/v1", StringComparison.Ordinal)).GetChatClient("lovelace:chat");
        ChatCompletion completion = await chat.CompleteChatAsync([new UserChatMessage("groq")]).WaitAsync(Timeout);
        Assert.Equal("You said: groq", completion.Content[0].Text);
    }

    [Fact]
    public async Task A_bad_key_is_a_401_client_result_exception()
    {
        var chat = Client(key: "sk_not_a_real_key").GetChatClient("lovelace:chat");
        var ex = await Assert.ThrowsAsync<ClientResultException>(() => chat.CompleteChatAsync([new UserChatMessage("x")]));
        Assert.Equal(401, ex.Status);
        Assert.Contains("invalid_api_key", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unknown_model_is_a_404_client_result_exception()
    {
        var chat = Client().GetChatClient("lovelace:no-such-model");
        var ex = await Assert.ThrowsAsync<ClientResultException>(() => chat.CompleteChatAsync([new UserChatMessage("x")]));
        Assert.Equal(404, ex.Status);
        Assert.Contains("model_not_found", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_bad_request_is_a_400_client_result_exception_naming_the_param()
    {
        var chat = Client().GetChatClient("lovelace:chat");
        var ex = await Assert.ThrowsAsync<ClientResultException>(() => chat.CompleteChatAsync([new UserChatMessage("x")], new ChatCompletionOptions { Temperature = 5f }));
        Assert.Equal(400, ex.Status);
        Assert.Contains("temperature", ex.Message, StringComparison.Ordinal);
    }
}

/// <summary>A minimal PCM WAV, so uploads are real audio files.</summary>
internal static class Wav
{
    public static byte[] Silence(int sampleRate, double seconds)
    {
        var samples = (int)(sampleRate * seconds);
        using var ms = new MemoryStream();
        using var w = new BinaryWriter(ms);
        w.Write("RIFF"u8);
        w.Write(36 + samples * 2);
        w.Write("WAVEfmt "u8);
        w.Write(16);
        w.Write((short)1);
        w.Write((short)1);
        w.Write(sampleRate);
        w.Write(sampleRate * 2);
        w.Write((short)2);
        w.Write((short)16);
        w.Write("data"u8);
        w.Write(samples * 2);
        for (var i = 0; i < samples; i++)
        {
            w.Write((short)(Math.Sin(i * 0.05) * 1000));
        }
        w.Flush();
        return ms.ToArray();
    }
}
