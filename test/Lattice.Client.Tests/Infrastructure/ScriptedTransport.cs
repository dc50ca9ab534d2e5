using System.Collections.Concurrent;
using System.Net;
using System.Text;

namespace Lattice.Client.Tests.Infrastructure;

/// <summary>A transport that answers from a script, one entry per attempt, and keeps what each attempt sent.</summary>
public sealed class ScriptedTransport(params Func<HttpRequestMessage, HttpResponseMessage>[] answers) : HttpMessageHandler
{
    private int _next;

    public ConcurrentQueue<(HttpMethod Method, string Path, string? IdempotencyKey, string? Authorization, string Body)> Sent { get; } = new();

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var body = request.Content is null ? "" : await request.Content.ReadAsStringAsync(cancellationToken);
        Sent.Enqueue((request.Method, request.RequestUri!.AbsolutePath, request.Headers.TryGetValues("Idempotency-Key", out var keys) ? keys.Single() : null,
            request.Headers.Authorization?.ToString(), body));
        var index = Interlocked.Increment(ref _next) - 1;
        var response = answers[Math.Min(index, answers.Length - 1)](request);
        response.RequestMessage = request;
        return response;
    }

    public static HttpResponseMessage Json(HttpStatusCode status, string json, string requestId = "req_scripted", TimeSpan? retryAfter = null)
    {
        var response = new HttpResponseMessage(status) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        response.Headers.Add("x-request-id", requestId);
        if (retryAfter is { } wait)
        {
            response.Headers.RetryAfter = new System.Net.Http.Headers.RetryConditionHeaderValue(wait);
        }
        return response;
    }

    public static HttpResponseMessage Error(HttpStatusCode status, string code, string type = "invalid_request_error", string requestId = "req_scripted",
        TimeSpan? retryAfter = null, string message = "scripted") =>
        Json(status, $$$"""{"error":{"message":"{{{message}}}","type":"{{{type}}}","param":null,"code":"{{{code}}}"}}""", requestId, retryAfter);

    public const string Completion =
        """{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"lovelace:chat","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}""";
}
