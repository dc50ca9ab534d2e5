using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Tasks;
using Lattice.Gateway.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Tasks;

/// <summary>Request bodies on the wire: a task class's own limit, and the per-caller cap on uploads, in each surface's error shape.</summary>
[Collection(GatewayCollection.Name)]
public sealed class RequestBodyHttpTests(GatewayFixture gateway)
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_body_over_its_task_classes_limit_is_413_naming_the_limit(bool declared)
    {
        await EnsureSmallBodyTaskAsync();
        using var client = gateway.DevClient();
        var json = "{\"model\":\"lovelace:nope\",\"pad\":\"" + new string('a', GatewayFixture.SmallBodyTaskLimit) + "\"}";

        using var response = await client.PostAsync("/v1/tasks/" + GatewayFixture.SmallBodyTask, Body(json, declared));

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Equal(
            "{\"error\":{\"message\":\"The request body is larger than the limit of " + GatewayFixture.SmallBodyTaskLimit + " bytes for the task '"
            + GatewayFixture.SmallBodyTask + "'.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"request_too_large\"}}",
            await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task A_body_within_its_task_classes_limit_is_read()
    {
        await EnsureSmallBodyTaskAsync();
        using var client = gateway.DevClient();
        var json = "{\"model\":\"lovelace:nope\",\"pad\":\"" + new string('a', GatewayFixture.SmallBodyTaskLimit - 40) + "\"}";
        Assert.True(Encoding.UTF8.GetByteCount(json) <= GatewayFixture.SmallBodyTaskLimit);

        using var response = await client.PostAsync("/v1/tasks/" + GatewayFixture.SmallBodyTask, Body(json, declared: true));

        // Read and validated: the model is what it refuses.
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("model_not_found", JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
    }

    [Fact]
    public async Task Uploads_past_the_per_caller_limit_get_429_before_their_bodies_are_read_until_one_finishes()
    {
        var key = await gateway.CreateKeyAsync();
        var credentialId = await CredentialOfAsync(key);
        var bodies = gateway.Factory.Services.GetRequiredService<RequestBodies>();
        // The test server's own client: the factory's default one buffers request bodies (to follow redirects), so no body could be held open.
        using var client = gateway.Factory.Server.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        const int limit = 8;
        const string chat = """{"model":"lovelace:chat","messages":[{"role":"user","content":"hello"}]}""";

        var held = new List<(HeldContent Content, Task<HttpResponseMessage> Response)>();
        for (var i = 0; i < limit; i++)
        {
            var content = new HeldContent(chat);
            held.Add((content, client.PostAsync("/v1/chat/completions", content, timeout.Token)));
        }
        await WaitForUploadsAsync(bodies, credentialId, limit, timeout.Token);

        // The next, on either surface, is refused before a byte of its body is read.
        var refused = new HeldContent(chat);
        using (var response = await client.PostAsync("/v1/chat/completions", refused, timeout.Token))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
            Assert.Equal(
                """{"error":{"message":"Too many uploads at once: this credential already has 8 request bodies being received. Retry when one has finished.","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}""",
                await response.Content.ReadAsStringAsync(timeout.Token));
        }
        refused.Release();
        using (var anthropic = new HttpRequestMessage(HttpMethod.Post, "/v1/messages"))
        {
            anthropic.Headers.Add("anthropic-version", "2023-06-01");
            var held2 = new HeldContent("""{"model":"lovelace:chat","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}""");
            anthropic.Content = held2;
            using var response = await client.SendAsync(anthropic, timeout.Token);
            Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
            var error = JsonNode.Parse(await response.Content.ReadAsStringAsync(timeout.Token))!;
            Assert.Equal("error", error["type"]!.GetValue<string>());
            Assert.Equal("rate_limit_error", error["error"]!["type"]!.GetValue<string>());
            held2.Release();
        }

        // One finishes: its request is answered, and one more upload is accepted.
        held[0].Content.Release();
        using (var first = await held[0].Response)
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        }
        await WaitForUploadsAsync(bodies, credentialId, limit - 1, timeout.Token);
        var another = new HeldContent(chat);
        held.Add((another, client.PostAsync("/v1/chat/completions", another, timeout.Token)));
        await WaitForUploadsAsync(bodies, credentialId, limit, timeout.Token);

        foreach (var (content, response) in held.Skip(1))
        {
            content.Release();
            using var answer = await response;
            Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        }
        await WaitForUploadsAsync(bodies, credentialId, 0, timeout.Token);
    }

    private async Task EnsureSmallBodyTaskAsync()
    {
        using var response = await gateway.Admin.GetAsync("/admin/v1/task-classes/" + GatewayFixture.SmallBodyTask);
        if (response.StatusCode == HttpStatusCode.NotFound)
        {
            await GatewayFixture.PostAsync(gateway.Admin, "/admin/v1/task-classes", new JsonObject
            {
                ["name"] = GatewayFixture.SmallBodyTask,
                ["input_schema"] = new JsonObject { ["type"] = "object" },
            });
        }
    }

    private async Task<string> CredentialOfAsync(string key)
    {
        var context = new DefaultHttpContext();
        context.Request.Headers.Authorization = "Bearer " + key;
        var (failure, caller) = await gateway.Factory.Services.GetRequiredService<Authenticator>().AuthenticateAsync(context.Request);
        Assert.Equal(AuthFailure.None, failure);
        return caller!.CredentialId;
    }

    /// <summary>Waits on the gateway's own count of this credential's uploads in flight (no fixed sleep stands for it).</summary>
    private static async Task WaitForUploadsAsync(RequestBodies bodies, string credentialId, int count, CancellationToken cancellationToken)
    {
        while (bodies.UploadsInFlight(credentialId) != count)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                Assert.Fail($"uploads in flight: {bodies.UploadsInFlight(credentialId)}, waiting for {count} ({credentialId})");
            }
            await Task.Delay(5, CancellationToken.None);
        }
    }

    private static HttpContent Body(string json, bool declared)
    {
        var bytes = Encoding.UTF8.GetBytes(json);
        HttpContent content = declared ? new ByteArrayContent(bytes) : new StreamContent(new NonSeekable(bytes));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        return content;
    }

    private sealed class NonSeekable(byte[] data) : MemoryStream(data)
    {
        public override bool CanSeek => false;
    }

    /// <summary>A JSON body with its length declared that sends its first byte, then the rest only when released.</summary>
    private sealed class HeldContent : HttpContent
    {
        private readonly byte[] _bytes;
        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public HeldContent(string json)
        {
            _bytes = Encoding.UTF8.GetBytes(json);
            Headers.ContentType = new MediaTypeHeaderValue("application/json");
            Headers.ContentLength = _bytes.Length;
        }

        public void Release() => _released.TrySetResult();

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            await stream.WriteAsync(_bytes.AsMemory(0, 1));
            await stream.FlushAsync();
            await _released.Task;
            await stream.WriteAsync(_bytes.AsMemory(1));
        }

        protected override bool TryComputeLength(out long length)
        {
            length = _bytes.Length;
            return true;
        }
    }
}
