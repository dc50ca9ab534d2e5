using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.Testing;

namespace Lattice.Gateway.Tests.OpenAi;

[Collection(GatewayCollection.Name)]
public sealed class TranscriptionsTests(GatewayFixture gateway)
{
    private static readonly byte[] Audio = Enumerable.Range(0, 4000).Select(i => (byte)(i * 7)).ToArray();

    /// <summary>The multipart body the official SDKs send: unquoted field names and an RFC 5987 <c>filename*</c>.</summary>
    private static ByteArrayContent SdkStyleMultipart(string responseFormat, params (string Name, string Value)[] extra)
    {
        const string boundary = "----sdk-boundary-42";
        using var ms = new MemoryStream();
        void Text(string s) => ms.Write(Encoding.UTF8.GetBytes(s));
        Text($"--{boundary}\r\nContent-Disposition: form-data; name=file; filename*=utf-8''h%C3%A9llo.wav\r\nContent-Type: audio/wav\r\n\r\n");
        ms.Write(Audio);
        Text($"\r\n--{boundary}\r\nContent-Disposition: form-data; name=model\r\n\r\nlovelace:whisper\r\n");
        Text($"--{boundary}\r\nContent-Disposition: form-data; name=\"response_format\"\r\n\r\n{responseFormat}\r\n");
        foreach (var (name, value) in extra)
        {
            Text($"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n");
        }
        Text($"--{boundary}--\r\n");
        var content = new ByteArrayContent(ms.ToArray());
        content.Headers.ContentType = MediaTypeHeaderValue.Parse($"multipart/form-data; boundary={boundary}");
        return content;
    }

    [Theory]
    [InlineData("json", "application/json")]
    [InlineData("verbose_json", "application/json")]
    [InlineData("text", "text/plain")]
    [InlineData("srt", "text/plain")]
    [InlineData("vtt", "text/plain")]
    public async Task Every_response_format_is_relayed(string format, string mediaType)
    {
        using var client = gateway.DevClient();
        using var response = await client.PostAsync("/v1/audio/transcriptions",
            SdkStyleMultipart(format, ("language", "en"), ("temperature", "0.2"), ("prompt", "greeting"), ("timestamp_granularities[]", "word"), ("timestamp_granularities[]", "segment")));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        Assert.Equal(mediaType, response.Content.Headers.ContentType?.MediaType);
        switch (format)
        {
            case "json":
                OpenApiContract.AssertValid("CreateTranscriptionResponseJson", text);
                Assert.Equal("Hello from the stand-in.", JsonDocument.Parse(text).RootElement.GetProperty("text").GetString());
                break;
            case "verbose_json":
                OpenApiContract.AssertValid("CreateTranscriptionResponseVerboseJson", text);
                Assert.True(JsonDocument.Parse(text).RootElement.GetProperty("words").GetArrayLength() > 0);
                break;
            case "text":
                Assert.Equal("Hello from the stand-in.", text.TrimEnd('\n'));
                break;
            case "srt":
                Assert.Contains("00:00:00,000 --> 00:00:01,000", text, StringComparison.Ordinal);
                break;
            case "vtt":
                Assert.StartsWith("WEBVTT", text, StringComparison.Ordinal);
                break;
        }

        // The upstream got the same file bytes and every field; only the model changed.
        var last = await gateway.LastUpstreamRequestAsync("/v1/audio/transcriptions");
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(Audio)), last["upload"]!["sha256"]!.GetValue<string>());
        var body = Encoding.UTF8.GetString(Convert.FromBase64String(last["body_base64"]!.GetValue<string>()));
        Assert.Contains("name=model\r\n\r\nstandin-whisper\r\n", body, StringComparison.Ordinal);
        Assert.Contains("filename*=utf-8''h%C3%A9llo.wav", body, StringComparison.Ordinal);
        Assert.Contains("name=\"timestamp_granularities[]\"\r\n\r\nword\r\n", body, StringComparison.Ordinal);
        Assert.DoesNotContain("lovelace:whisper", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_bad_response_format_is_named()
    {
        using var client = gateway.DevClient();
        using var response = await client.PostAsync("/v1/audio/transcriptions", SdkStyleMultipart("mp3"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("response_format", doc.RootElement.GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task A_temperature_that_is_not_a_number_is_named()
    {
        using var client = gateway.DevClient();
        using var response = await client.PostAsync("/v1/audio/transcriptions", SdkStyleMultipart("json", ("temperature", "warm")));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("temperature", doc.RootElement.GetProperty("error").GetProperty("param").GetString());
    }
}
