using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.Testing;

namespace Lattice.Gateway.Tests.OpenAi;

/// <summary>Bad input of every kind gets a 4xx in OpenAI's envelope naming what is wrong — never a 500, never a hang.</summary>
[Collection(GatewayCollection.Name)]
public sealed class BadRequestTableTests(GatewayFixture gateway)
{
    public enum Auth { Dev, None, Wrong, AdminOnly, XApiKey, MalformedHeader }

    private const string Chat = "/v1/chat/completions";
    private const string Embed = "/v1/embeddings";
    private const string Json = "application/json";
    private const string Ok = """{"role":"user","content":"hi"}""";

    public static TheoryData<string, string, string, Auth, string?, string?, int, string?, string?> Cases => new()
    {
        // name, method, path, auth, content type, body, status, code, param
        { "malformed json", "POST", Chat, Auth.Dev, Json, "{", 400, "invalid_json", null },
        { "truncated json", "POST", Chat, Auth.Dev, Json, """{"model":"lovelace:chat","messages":[""", 400, "invalid_json", null },
        { "trailing garbage", "POST", Chat, Auth.Dev, Json, """{"model":"lovelace:chat"} x""", 400, "invalid_json", null },
        { "empty body", "POST", Chat, Auth.Dev, Json, "", 400, "invalid_json", null },
        { "json array body", "POST", Chat, Auth.Dev, Json, "[]", 400, "invalid_type", null },
        { "json string body", "POST", Chat, Auth.Dev, Json, "\"hi\"", 400, "invalid_type", null },
        { "json null body", "POST", Chat, Auth.Dev, Json, "null", 400, "invalid_type", null },
        { "not utf8", "POST", Chat, Auth.Dev, Json, "{\"model\":\"\udc00\"}", 400, "invalid_json", null },
        // Found by the fuzzer: an escaped lone surrogate threw inside the schema check (a 500).
        { "escaped lone high surrogate", "POST", Chat, Auth.Dev, Json, """{"model":"lovelace:chat","messages":[{"role":"\ud800"}]}""", 400, "invalid_json", null },
        { "escaped lone low surrogate", "POST", Chat, Auth.Dev, Json, """{"model":"lovelace:chat","messages":[{"role":"user","content":"a\uDC00b"}]}""", 400, "invalid_json", null },
        { "escaped high surrogate then text", "POST", Chat, Auth.Dev, Json, """{"model":"lovelace:chat","messages":[{"role":"user","content":"\ud83dx"}]}""", 400, "invalid_json", null },
        { "missing model", "POST", Chat, Auth.Dev, Json, $$$"""{"messages":[{{{Ok}}}]}""", 400, "missing_required_parameter", "model" },
        { "missing messages", "POST", Chat, Auth.Dev, Json, """{"model":"lovelace:chat"}""", 400, "missing_required_parameter", "messages" },
        { "model is number", "POST", Chat, Auth.Dev, Json, $$$"""{"model":5,"messages":[{{{Ok}}}]}""", 400, "invalid_type", "model" },
        { "model is empty", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"","messages":[{{{Ok}}}]}""", 400, "invalid_value", "model" },
        { "model is null", "POST", Chat, Auth.Dev, Json, $$$"""{"model":null,"messages":[{{{Ok}}}]}""", 400, "invalid_type", "model" },
        { "messages is string", "POST", Chat, Auth.Dev, Json, """{"model":"lovelace:chat","messages":"hi"}""", 400, "invalid_type", "messages" },
        { "messages empty", "POST", Chat, Auth.Dev, Json, """{"model":"lovelace:chat","messages":[]}""", 400, "invalid_value", "messages" },
        { "message not object", "POST", Chat, Auth.Dev, Json, """{"model":"lovelace:chat","messages":["hi"]}""", 400, "invalid_type", "messages[0]" },
        { "unknown role", "POST", Chat, Auth.Dev, Json, """{"model":"lovelace:chat","messages":[{"role":"robot","content":"x"}]}""", 400, "invalid_value", "messages[0].role" },
        { "role missing", "POST", Chat, Auth.Dev, Json, """{"model":"lovelace:chat","messages":[{"content":"x"}]}""", 400, "missing_required_parameter", "messages[0].role" },
        { "role is number", "POST", Chat, Auth.Dev, Json, """{"model":"lovelace:chat","messages":[{"role":1,"content":"x"}]}""", 400, "invalid_value", "messages[0].role" },
        { "user content missing", "POST", Chat, Auth.Dev, Json, """{"model":"lovelace:chat","messages":[{"role":"user"}]}""", 400, "missing_required_parameter", "messages[0].content" },
        { "content is number", "POST", Chat, Auth.Dev, Json, """{"model":"lovelace:chat","messages":[{"role":"user","content":5}]}""", 400, "invalid_type", "messages[0].content" },
        { "tool without id", "POST", Chat, Auth.Dev, Json, """{"model":"lovelace:chat","messages":[{"role":"tool","content":"x"}]}""", 400, "missing_required_parameter", "messages[0].tool_call_id" },
        { "second message bad", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}},{"role":"wizard","content":"x"}]}""", 400, "invalid_value", "messages[1].role" },
        { "negative max_tokens", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}],"max_tokens":-1}""", 400, "invalid_value", "max_tokens" },
        { "zero max_tokens", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}],"max_tokens":0}""", 400, "invalid_value", "max_tokens" },
        { "max_tokens string", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}],"max_tokens":"5"}""", 400, "invalid_type", "max_tokens" },
        { "max_tokens fraction", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}],"max_tokens":1.5}""", 400, "invalid_type", "max_tokens" },
        { "negative max_completion_tokens", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}],"max_completion_tokens":-3}""", 400, "invalid_value", "max_completion_tokens" },
        { "temperature too high", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}],"temperature":3}""", 400, "invalid_value", "temperature" },
        { "temperature negative", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}],"temperature":-0.5}""", 400, "invalid_value", "temperature" },
        { "temperature string", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}],"temperature":"hot"}""", 400, "invalid_type", "temperature" },
        { "top_p above one", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}],"top_p":1.5}""", 400, "invalid_value", "top_p" },
        { "n zero", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}],"n":0}""", 400, "invalid_value", "n" },
        { "stream string", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}],"stream":"yes"}""", 400, "invalid_type", "stream" },
        { "stream_options not object", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}],"stream_options":5}""", 400, "invalid_type", "stream_options" },
        { "include_usage string", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}],"stream_options":{"include_usage":"yes"}}""", 400, "invalid_type", "stream_options.include_usage" },
        { "stop too many", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}],"stop":["a","b","c","d","e"]}""", 400, "invalid_value", "stop" },
        { "stop number", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}],"stop":5}""", 400, "invalid_type", "stop" },
        { "tools not array", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}],"tools":{}}""", 400, "invalid_type", "tools" },
        { "tool without type", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}],"tools":[{"function":{}}]}""", 400, "missing_required_parameter", "tools[0].type" },
        { "response_format unknown", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}],"response_format":{"type":"yaml"}}""", 400, "invalid_value", "response_format.type" },
        { "seed string", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}],"seed":"x"}""", 400, "invalid_type", "seed" },
        { "metadata value number", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}],"metadata":{"a":1}}""", 400, "invalid_type", "metadata.a" },
        { "user number", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}],"user":42}""", 400, "invalid_type", "user" },
        { "too deep", "POST", Chat, Auth.Dev, Json, "{\"model\":\"lovelace:chat\",\"x\":" + new string('[', 100) + new string(']', 100) + "}", 400, "invalid_json", null },
        { "multipart to chat", "POST", Chat, Auth.Dev, "multipart/form-data; boundary=x", "--x--", 415, "unsupported_media_type", null },
        { "unknown model", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:nope","messages":[{{{Ok}}}]}""", 404, "model_not_found", "model" },
        { "bare unknown model", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"gpt-99","messages":[{{{Ok}}}]}""", 404, "model_not_found", "model" },
        { "model with spaces", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace: chat","messages":[{{{Ok}}}]}""", 404, "model_not_found", "model" },
        { "unknown personal runtime", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lattice:personal:lat_nope","messages":[{{{Ok}}}]}""", 404, "personal_lattice_not_found", "model" },
        { "model for another task", "POST", Chat, Auth.Dev, Json, $$$"""{"model":"lovelace:embed","messages":[{{{Ok}}}]}""", 400, "model_not_supported", "model" },
        { "no key", "POST", Chat, Auth.None, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}]}""", 401, "invalid_api_key", null },
        { "wrong key", "POST", Chat, Auth.Wrong, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}]}""", 401, "invalid_api_key", null },
        { "wrong x-api-key", "POST", Chat, Auth.XApiKey, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}]}""", 401, "invalid_api_key", null },
        { "basic auth header", "POST", Chat, Auth.MalformedHeader, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}]}""", 401, "invalid_api_key", null },
        { "no key before bad body", "POST", Chat, Auth.None, Json, "{", 401, "invalid_api_key", null },
        { "admin key cannot infer", "POST", Chat, Auth.AdminOnly, Json, $$$"""{"model":"lovelace:chat","messages":[{{{Ok}}}]}""", 403, "insufficient_scopes", null },
        { "embeddings missing input", "POST", Embed, Auth.Dev, Json, """{"model":"lovelace:embed"}""", 400, "missing_required_parameter", "input" },
        { "embeddings input number", "POST", Embed, Auth.Dev, Json, """{"model":"lovelace:embed","input":5}""", 400, "invalid_type", "input" },
        { "embeddings empty array", "POST", Embed, Auth.Dev, Json, """{"model":"lovelace:embed","input":[]}""", 400, "invalid_value", "input" },
        { "embeddings bad format", "POST", Embed, Auth.Dev, Json, """{"model":"lovelace:embed","input":"a","encoding_format":"hex"}""", 400, "invalid_value", "encoding_format" },
        { "embeddings zero dimensions", "POST", Embed, Auth.Dev, Json, """{"model":"lovelace:embed","input":"a","dimensions":0}""", 400, "invalid_value", "dimensions" },
        { "embeddings stream", "POST", Embed, Auth.Dev, Json, """{"model":"lovelace:embed","input":"a","stream":true}""", 400, "invalid_value", "stream" },
        { "transcription as json", "POST", "/v1/audio/transcriptions", Auth.Dev, Json, """{"model":"lovelace:whisper"}""", 415, "unsupported_media_type", null },
        { "transcription no boundary", "POST", "/v1/audio/transcriptions", Auth.Dev, "multipart/form-data", "x", 400, "invalid_value", null },
        { "transcription missing file", "POST", "/v1/audio/transcriptions", Auth.Dev, "multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=model\r\n\r\nlovelace:whisper\r\n--b--\r\n", 400, "missing_required_parameter", "file" },
        { "transcription garbage multipart", "POST", "/v1/audio/transcriptions", Auth.Dev, "multipart/form-data; boundary=b", "--b\r\nnot a header line\r\n", 400, "invalid_value", null },
        { "unknown task", "POST", "/v1/tasks/no.such.task", Auth.Dev, Json, """{"model":"lovelace:chat"}""", 404, "task_not_found", null },
        { "unknown route", "POST", "/v1/nothing/here", Auth.Dev, Json, "{}", 404, "not_found", null },
        { "unknown model get", "GET", "/v1/models/lovelace:nope", Auth.Dev, null, null, 404, "model_not_found", "model" },
        { "models without key", "GET", "/v1/models", Auth.None, null, null, 401, "invalid_api_key", null },
        { "groq path no key", "POST", "/openai/v1/chat/completions", Auth.None, Json, "{}", 401, "invalid_api_key", null },
        { "admin with dev key", "GET", "/admin/v1/workspaces", Auth.Dev, null, null, 403, "insufficient_scopes", null },
        { "admin without key", "GET", "/admin/v1/workspaces", Auth.None, null, null, 401, "invalid_api_key", null },
        { "admin bad json", "POST", "/admin/v1/workspaces", Auth.AdminOnly, Json, "{", 400, "invalid_json", null },
        { "admin bad schema", "POST", "/admin/v1/task-classes", Auth.AdminOnly, Json, """{"name":"x.y","input_schema":{"type":5}}""", 400, "invalid_value", "input_schema" },
        { "admin unknown key revoke", "POST", "/admin/v1/keys/key_nope/revoke", Auth.AdminOnly, Json, "{}", 404, "not_found", null },
        { "admin offer without url", "POST", "/admin/v1/models", Auth.AdminOnly, Json, """{"id":"lovelace:z","offers":[{"upstream_model":"m"}]}""", 400, "invalid_value", "offers[0].base_url" },
        { "admin unknown credential", "POST", "/admin/v1/models", Auth.AdminOnly, Json, """{"id":"lovelace:z","offers":[{"base_url":"http://127.0.0.1:1/v1","upstream_model":"m","credential":"nope"}]}""", 400, "invalid_value", "offers[0].credential" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Bad_requests_get_a_4xx_in_openai_shape(string name, string method, string path, Auth auth, string? contentType, string? body, int status, string? code, string? param)
    {
        using var client = gateway.Client();
        using var request = new HttpRequestMessage(new HttpMethod(method), path);
        switch (auth)
        {
            case Auth.Dev: request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", gateway.ApiKey); break;
            case Auth.Wrong: request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "sk_wrongwrongwrong"); break;
            case Auth.XApiKey: request.Headers.Add("x-api-key", "sk_wrongwrongwrong"); break;
            case Auth.AdminOnly: request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", GatewayFixture.AdminKey); break;
            case Auth.MalformedHeader: request.Headers.Authorization = new AuthenticationHeaderValue("Basic", "dXNlcjpwYXNz"); break;
        }
        if (body is not null)
        {
            var bytes = name == "not utf8" ? [.. "{\"model\":\"lovelace:chat"u8, 0xff, 0xfe, .. "\",\"messages\":[]}"u8] : Encoding.UTF8.GetBytes(body);
            request.Content = new ByteArrayContent(bytes);
            request.Content.Headers.TryAddWithoutValidation("Content-Type", contentType);
        }

        using var response = await client.SendAsync(request).WaitAsync(TimeSpan.FromSeconds(20));
        var text = await response.Content.ReadAsStringAsync();

        Assert.True(status == (int)response.StatusCode, $"{name}: expected {status}, got {(int)response.StatusCode}: {text}");
        Assert.True(response.Headers.Contains("x-request-id"), name);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        OpenApiContract.AssertValid("ErrorResponse", text);
        using var doc = JsonDocument.Parse(text);
        var error = doc.RootElement.GetProperty("error");
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()), name);
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.Equal(param, error.GetProperty("param").GetString());
    }

    [Fact]
    public void The_table_has_at_least_fifty_cases() => Assert.True(Cases.Count >= 50);

    [Fact]
    public async Task A_body_over_the_limit_is_413()
    {
        using var client = gateway.DevClient();
        var big = "{\"model\":\"lovelace:chat\",\"messages\":[{\"role\":\"user\",\"content\":\"" + new string('a', (int)GatewayFixture.MaxBodyBytes) + "\"}]}";
        using var response = await client.PostAsync("/v1/chat/completions", new StringContent(big, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("request_too_large", doc.RootElement.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task A_chunked_body_over_the_limit_is_413()
    {
        using var client = gateway.DevClient();
        var big = new byte[GatewayFixture.MaxBodyBytes + 10];
        Array.Fill(big, (byte)' ');
        using var content = new StreamContent(new NonSeekableStream(big));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var response = await client.PostAsync("/v1/chat/completions", content);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
    }

    private sealed class NonSeekableStream(byte[] data) : MemoryStream(data)
    {
        public override bool CanSeek => false;
    }
}
