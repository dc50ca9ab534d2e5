using System.Net;
using System.Text;
using System.Text.Json;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.StandIn.OpenAi;
using Lattice.Testing;

namespace Lattice.Gateway.Tests.OpenAi;

[Collection(GatewayCollection.Name)]
public sealed class EmbeddingsAndModelsTests(GatewayFixture gateway)
{
    [Fact]
    public async Task Embeddings_float_for_an_array_input()
    {
        using var client = gateway.DevClient();
        using var response = await client.PostAsync("/v1/embeddings", new StringContent("""{"model":"lovelace:embed","input":["a cat","a dog"],"dimensions":4}""", Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        OpenApiContract.AssertValid("CreateEmbeddingResponse", text);
        using var doc = JsonDocument.Parse(text);
        var data = doc.RootElement.GetProperty("data");
        Assert.Equal(2, data.GetArrayLength());
        var expected = StandInEmbeddings.Vector("a dog", 4);
        var actual = data[1].GetProperty("embedding").EnumerateArray().Select(e => e.GetSingle()).ToArray();
        Assert.Equal(expected, actual);
    }

    [Fact]
    public async Task Embeddings_base64_pass_through_as_little_endian_floats()
    {
        using var client = gateway.DevClient();
        using var response = await client.PostAsync("/v1/embeddings", new StringContent("""{"model":"lovelace:embed","input":"a cat","encoding_format":"base64"}""", Encoding.UTF8, "application/json"));
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var bytes = Convert.FromBase64String(doc.RootElement.GetProperty("data")[0].GetProperty("embedding").GetString()!);
        var floats = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, floats, 0, bytes.Length);
        Assert.Equal(StandInEmbeddings.Vector("a cat", 8), floats);
    }

    [Fact]
    public async Task Models_are_listed_with_id_object_created_owned_by()
    {
        using var client = gateway.DevClient();
        var text = await client.GetStringAsync("/v1/models");
        OpenApiContract.AssertValid("ListModelsResponse", text);
        using var doc = JsonDocument.Parse(text);
        var chat = doc.RootElement.GetProperty("data").EnumerateArray().Single(m => m.GetProperty("id").GetString() == "lovelace:chat");
        Assert.Equal("model", chat.GetProperty("object").GetString());
        Assert.Equal("tests", chat.GetProperty("owned_by").GetString());
        Assert.True(chat.GetProperty("created").GetInt64() > 1_600_000_000);
    }

    [Theory]
    [InlineData("/v1/models/lovelace:chat")]
    [InlineData("/v1/models/lovelace%3Achat")]
    [InlineData("/v1/models/lovelace%3achat")]
    [InlineData("/openai/v1/models/lovelace:chat")]
    public async Task A_model_is_found_by_raw_or_encoded_id(string path)
    {
        using var client = gateway.DevClient();
        using var response = await client.GetAsync(path);
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        OpenApiContract.AssertValid("Model", text);
        Assert.Equal("lovelace:chat", JsonDocument.Parse(text).RootElement.GetProperty("id").GetString());
    }
}
