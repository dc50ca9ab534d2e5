using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Lattice.Runtime.Engines;
using Lattice.Runtime.Engines.Embeddings;
using Lattice.Testing;

namespace Lattice.Runtime.Tests.Engines.Embeddings;

public sealed class OnnxEmbeddingsEngineTests(EmbeddingsEngineFixture fixture) : IClassFixture<EmbeddingsEngineFixture>
{
    [Fact]
    public void Advertises_the_embeddings_task_with_the_hash_of_the_onnx_model()
    {
        var capability = Assert.Single(fixture.Engine.Capabilities);
        Assert.Equal("embeddings", capability.Task);
        Assert.Equal("all-MiniLM-L6-v2", capability.Model);
        Assert.Matches("^[0-9a-f]{64}$", capability.ModelSha256);
        Assert.Equal("onnx-embeddings", fixture.Engine.Kind);
        Assert.Equal(1.0, fixture.Progress[^1]);
    }

    [Fact]
    public async Task Capabilities_are_empty_before_loading_and_execute_refuses()
    {
        await using var engine = new OnnxEmbeddingsEngine(new OnnxEmbeddingsOptions { ModelName = "minilm" });
        Assert.Empty(engine.Capabilities);
        await Assert.ThrowsAsync<InvalidOperationException>(() => engine.ExecuteAsync(
            new EngineRequest("embeddings", "minilm", "{}"u8.ToArray(), "application/json", false), new RecordingOutput(), CancellationToken.None));
    }

    [Fact]
    public async Task A_single_string_gives_one_unit_vector_of_384_dimensions_and_validates_against_the_contract()
    {
        var (output, usage) = await fixture.RunAsync(new JsonObject { ["input"] = "hello world", ["model"] = "lovelace:minilm" });

        Assert.Equal(200, output.Status);
        Assert.Equal("application/json", output.ContentType);
        OpenApiContract.AssertValid(OpenApiContract.Schemas.CreateEmbeddingResponse, output.Text);

        using var document = JsonDocument.Parse(output.Text);
        var root = document.RootElement;
        Assert.Equal("list", root.GetProperty("object").GetString());
        Assert.Equal("lovelace:minilm", root.GetProperty("model").GetString());
        var item = Assert.Single(root.GetProperty("data").EnumerateArray().ToArray());
        Assert.Equal("embedding", item.GetProperty("object").GetString());
        Assert.Equal(0, item.GetProperty("index").GetInt32());
        var vector = item.GetProperty("embedding").EnumerateArray().Select(v => v.GetSingle()).ToArray();
        Assert.Equal(384, vector.Length);
        Assert.Equal(1.0, EmbeddingsEngineFixture.Norm(vector), 4);

        // [CLS] hello world [SEP]
        Assert.Equal(4, root.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(4, root.GetProperty("usage").GetProperty("total_tokens").GetInt32());
        Assert.Equal(new EngineUsage(PromptTokens: 4), usage);
        Assert.Equal(["object", "data", "model", "usage"], root.EnumerateObject().Select(p => p.Name));
    }

    [Fact]
    public async Task Related_sentences_are_closer_than_unrelated_ones()
    {
        var vectors = await fixture.EmbedAsync("A cat sits on the mat", "A kitten is on the rug", "Stock markets fell sharply today");

        var related = EmbeddingsEngineFixture.Cosine(vectors[0], vectors[1]);
        var unrelated1 = EmbeddingsEngineFixture.Cosine(vectors[0], vectors[2]);
        var unrelated2 = EmbeddingsEngineFixture.Cosine(vectors[1], vectors[2]);
        Assert.True(related > 0.5, $"related cosine {related}");
        Assert.True(related > unrelated1 + 0.3, $"related {related} vs unrelated {unrelated1}");
        Assert.True(related > unrelated2 + 0.3, $"related {related} vs unrelated {unrelated2}");
    }

    [Fact]
    public async Task Matches_the_reference_embedding_of_sentence_transformers()
    {
        // sentence-transformers/all-MiniLM-L6-v2 (Python) gives these first values for "This is an example sentence".
        var vector = (await fixture.EmbedAsync("This is an example sentence"))[0];
        float[] expected = [0.0676569f, 0.0634959f, 0.0487131f, 0.0793049f, 0.0374480f];
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.Equal(expected[i], vector[i], 3);
        }
    }

    [Fact]
    public async Task A_batch_keeps_request_order_and_matches_single_requests()
    {
        string[] texts = ["The weather is lovely today.", "short", "Quantum chromodynamics describes the strong interaction between quarks and gluons.", "short"];
        var batch = await fixture.EmbedAsync(texts);

        Assert.Equal(texts.Length, batch.Length);
        for (var i = 0; i < texts.Length; i++)
        {
            var single = (await fixture.EmbedAsync(texts[i]))[0];
            Assert.True(EmbeddingsEngineFixture.Cosine(single, batch[i]) > 0.9999, $"item {i} differs from its single embedding");
        }
        Assert.Equal(1.0, EmbeddingsEngineFixture.Cosine(batch[1], batch[3]), 5);

        var (output, _) = await fixture.RunAsync(new JsonObject { ["input"] = new JsonArray("a", "b", "c") });
        using var document = JsonDocument.Parse(output.Text);
        Assert.Equal([0, 1, 2], document.RootElement.GetProperty("data").EnumerateArray().Select(d => d.GetProperty("index").GetInt32()));
    }

    [Fact]
    public async Task Batches_larger_than_one_onnx_run_are_split_and_counted()
    {
        await using var engine = new OnnxEmbeddingsEngine(new OnnxEmbeddingsOptions { ModelName = "small-batches", MaxBatchSize = 2 });
        await engine.LoadAsync(null, CancellationToken.None).WaitAsync(EmbeddingsEngineFixture.Timeout);
        var texts = new JsonArray("one", "two", "three", "four", "five");
        var output = new RecordingOutput();
        var body = Encoding.UTF8.GetBytes(new JsonObject { ["input"] = texts, ["model"] = "small-batches" }.ToJsonString());

        var usage = await engine.ExecuteAsync(new EngineRequest("embeddings", "small-batches", body, "application/json", false), output, CancellationToken.None)
            .WaitAsync(EmbeddingsEngineFixture.Timeout);

        var vectors = EmbeddingsEngineFixture.ReadFloatVectors(output.Text);
        var reference = await fixture.EmbedAsync("one", "two", "three", "four", "five");
        for (var i = 0; i < 5; i++)
        {
            Assert.True(EmbeddingsEngineFixture.Cosine(reference[i], vectors[i]) > 0.9999);
        }
        Assert.Equal(5 * 3, usage.PromptTokens);
    }

    [Fact]
    public async Task Engines_share_the_loaded_model_and_disposing_one_leaves_the_others_working()
    {
        var second = new OnnxEmbeddingsEngine(new OnnxEmbeddingsOptions { ModelName = "second" });
        await second.LoadAsync(null, CancellationToken.None).WaitAsync(EmbeddingsEngineFixture.Timeout);
        Assert.Equal(fixture.Engine.Capabilities[0].ModelSha256, second.Capabilities[0].ModelSha256);
        await second.DisposeAsync();
        Assert.Empty(second.Capabilities);

        var vectors = await fixture.EmbedAsync("still works");
        Assert.Equal(384, vectors[0].Length);
    }

    [Fact]
    public async Task Disposing_waits_for_requests_in_flight_and_then_refuses_new_ones()
    {
        var engine = new OnnxEmbeddingsEngine(new OnnxEmbeddingsOptions { ModelName = "disposable", MaxBatchSize = 4 });
        await engine.LoadAsync(null, CancellationToken.None).WaitAsync(EmbeddingsEngineFixture.Timeout);
        var inputs = new JsonArray(Enumerable.Range(0, 64).Select(i => (JsonNode?)JsonValue.Create($"sentence number {i}")).ToArray());
        var body = Encoding.UTF8.GetBytes(new JsonObject { ["input"] = inputs }.ToJsonString());
        var output = new RecordingOutput();

        var running = engine.ExecuteAsync(new EngineRequest("embeddings", "disposable", body, "application/json", false), output, CancellationToken.None);
        await engine.DisposeAsync().AsTask().WaitAsync(EmbeddingsEngineFixture.Timeout);
        await running.WaitAsync(EmbeddingsEngineFixture.Timeout);

        Assert.Equal(200, output.Status);
        Assert.Equal(64, EmbeddingsEngineFixture.ReadFloatVectors(output.Text).Length);
        await Assert.ThrowsAsync<ObjectDisposedException>(() =>
            engine.ExecuteAsync(new EngineRequest("embeddings", "disposable", body, "application/json", false), new RecordingOutput(), CancellationToken.None));
    }

    [Fact]
    public async Task Base64_is_the_little_endian_float32_bytes_of_the_float_form()
    {
        var floats = (await fixture.EmbedAsync("Base64 should carry the same numbers."))[0];
        var (output, _) = await fixture.RunAsync(new JsonObject { ["input"] = "Base64 should carry the same numbers.", ["encoding_format"] = "base64" });

        Assert.Equal(200, output.Status);
        using var document = JsonDocument.Parse(output.Text);
        var bytes = Convert.FromBase64String(document.RootElement.GetProperty("data")[0].GetProperty("embedding").GetString()!);
        Assert.Equal(384 * 4, bytes.Length);
        var decoded = new float[384];
        for (var i = 0; i < decoded.Length; i++)
        {
            decoded[i] = System.Buffers.Binary.BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(i * 4));
        }
        Assert.Equal(floats, decoded);
    }

    [Fact]
    public async Task Dimensions_truncates_and_renormalises()
    {
        const string text = "Matryoshka embeddings can be shortened.";
        var full = (await fixture.EmbedAsync(text))[0];
        var (output, _) = await fixture.RunAsync(new JsonObject { ["input"] = text, ["dimensions"] = 64 });

        Assert.Equal(200, output.Status);
        OpenApiContract.AssertValid(OpenApiContract.Schemas.CreateEmbeddingResponse, output.Text);
        var shortened = EmbeddingsEngineFixture.ReadFloatVectors(output.Text)[0];
        Assert.Equal(64, shortened.Length);
        Assert.Equal(1.0, EmbeddingsEngineFixture.Norm(shortened), 5);
        var prefixNorm = EmbeddingsEngineFixture.Norm(full[..64]);
        for (var i = 0; i < 64; i++)
        {
            Assert.Equal(full[i] / prefixNorm, shortened[i], 5);
        }

        var (same, _) = await fixture.RunAsync(new JsonObject { ["input"] = text, ["dimensions"] = 384 });
        Assert.Equal(full, EmbeddingsEngineFixture.ReadFloatVectors(same.Text)[0]);
    }

    [Fact]
    public async Task Long_inputs_are_truncated_to_the_sequence_length()
    {
        var text = string.Join(' ', Enumerable.Repeat("word", 1000));
        var (output, usage) = await fixture.RunAsync(new JsonObject { ["input"] = text });

        Assert.Equal(200, output.Status);
        Assert.Equal(256, usage.PromptTokens);
    }

    [Fact]
    public async Task Text_is_cleaned_like_berts_basic_tokenizer()
    {
        var vectors = await fixture.EmbedAsync("Café  au\tlait,\nplease!", "cafe au lait , please !");
        Assert.Equal(1.0, EmbeddingsEngineFixture.Cosine(vectors[0], vectors[1]), 5);
    }

    [Theory]
    [InlineData("not json", null, "invalid_json")]
    [InlineData("[1,2]", null, "invalid_json")]
    [InlineData("{}", "input", "missing_required_parameter")]
    [InlineData("{\"input\":\"\"}", "input", "invalid_value")]
    [InlineData("{\"input\":[]}", "input", "invalid_value")]
    [InlineData("{\"input\":[\"ok\",\"\"]}", "input", "invalid_value")]
    [InlineData("{\"input\":[\"ok\",3]}", "input", "invalid_value")]
    [InlineData("{\"input\":[1,2,3]}", "input", "invalid_value")]
    [InlineData("{\"input\":[[1,2],[3]]}", "input", "invalid_value")]
    [InlineData("{\"input\":42}", "input", "invalid_value")]
    [InlineData("{\"input\":\"x\",\"encoding_format\":\"int8\"}", "encoding_format", "invalid_value")]
    [InlineData("{\"input\":\"x\",\"dimensions\":385}", "dimensions", "invalid_value")]
    [InlineData("{\"input\":\"x\",\"dimensions\":0}", "dimensions", "invalid_value")]
    [InlineData("{\"input\":\"x\",\"dimensions\":1.5}", "dimensions", "invalid_value")]
    public async Task Bad_requests_are_answered_with_a_400_envelope(string body, string? param, string code)
    {
        var (output, usage) = await fixture.RunRawAsync(Encoding.UTF8.GetBytes(body));

        Assert.Equal(400, output.Status);
        Assert.Equal("application/json", output.ContentType);
        OpenApiContract.AssertValid(OpenApiContract.Schemas.ErrorResponse, output.Text);
        using var document = JsonDocument.Parse(output.Text);
        var error = document.RootElement.GetProperty("error");
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        Assert.Equal(new EngineUsage(), usage);
    }

    [Fact]
    public async Task Too_many_inputs_are_refused()
    {
        await using var engine = new OnnxEmbeddingsEngine(new OnnxEmbeddingsOptions { ModelName = "tiny-limit", MaxInputs = 2 });
        await engine.LoadAsync(null, CancellationToken.None).WaitAsync(EmbeddingsEngineFixture.Timeout);
        var output = new RecordingOutput();
        await engine.ExecuteAsync(
            new EngineRequest("embeddings", "tiny-limit", "{\"input\":[\"a\",\"b\",\"c\"]}"u8.ToArray(), "application/json", false), output, CancellationToken.None)
            .WaitAsync(EmbeddingsEngineFixture.Timeout);
        Assert.Equal(400, output.Status);
        Assert.Contains("\"param\":\"input\"", output.Text);
    }

    [Fact]
    public async Task An_unknown_model_is_a_404()
    {
        var (output, _) = await fixture.RunRawAsync("{\"input\":\"x\"}"u8.ToArray(), model: "other-model");

        Assert.Equal(404, output.Status);
        Assert.Contains("model_not_found", output.Text);
    }

    [Fact]
    public async Task Eight_parallel_requests_give_the_same_vectors_as_sequential_ones()
    {
        var texts = Enumerable.Range(0, 8).Select(i => $"Parallel request number {i} about topic {(char)('a' + i)}.").ToArray();
        var sequential = new float[texts.Length][];
        for (var i = 0; i < texts.Length; i++)
        {
            sequential[i] = (await fixture.EmbedAsync(texts[i]))[0];
        }

        var parallel = await Task.WhenAll(texts.Select(t => Task.Run(() => fixture.EmbedAsync(t, t))));

        for (var i = 0; i < texts.Length; i++)
        {
            Assert.Equal(2, parallel[i].Length);
            Assert.True(EmbeddingsEngineFixture.Cosine(sequential[i], parallel[i][0]) > 0.9999);
            Assert.True(EmbeddingsEngineFixture.Cosine(sequential[i], parallel[i][1]) > 0.9999);
        }
    }

    [Fact]
    public async Task A_cancelled_request_throws_and_writes_nothing()
    {
        using var cancellation = new CancellationTokenSource();
        await cancellation.CancelAsync();
        var output = new RecordingOutput();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => fixture.Engine.ExecuteAsync(
            new EngineRequest("embeddings", EmbeddingsEngineFixture.ModelName, "{\"input\":\"x\"}"u8.ToArray(), "application/json", false),
            output,
            cancellation.Token));
        Assert.Null(output.Status);
    }

    [Theory]
    [InlineData("Hello, World!", "hello ,  world ! ")]
    [InlineData("Crème brûlée", "creme brulee")]
    [InlineData("tab\there\r\nnew", "tab here  new")]
    [InlineData("中文", " 中  文 ")]
    [InlineData("zero\u200Bwidth\u0000", "zerowidth")]
    [InlineData("naïve résumé", "naive resume")]
    [InlineData("“quoted”", " “ quoted ” ")]
    public void The_normalizer_splits_punctuation_lowercases_and_strips_accents(string input, string expected) =>
        Assert.Equal(expected, BertTextNormalizer.Normalize(input));
}
