using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using Lattice.Gateway.Telemetry;
using Lattice.Gateway.Tests.Identity;

namespace Lattice.Gateway.Tests.Telemetry;

/// <summary>
/// The request path's spans, caught by a listener and picked out by the trace id the client sent (other tests run in
/// the same process): one per stage, none carrying the prompt or the answer.
/// </summary>
public sealed class TracingTests(OAuthGateway server) : IClassFixture<OAuthGateway>
{
    private const string Prompt = "the secret prompt words";

    [Fact]
    public async Task A_request_has_a_span_per_stage_and_none_carries_its_text()
    {
        var trace = ActivityTraceId.CreateRandom();
        var spans = new ConcurrentQueue<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name is GatewayTracing.SourceName or "Microsoft.AspNetCore",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity =>
            {
                if (activity.TraceId == trace)
                {
                    spans.Enqueue(activity);
                }
            },
        };
        ActivitySource.AddActivityListener(listener);

        using var client = server.Client(server.A.Key);
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
        {
            Content = JsonContent(new JsonObject
            {
                ["model"] = "lovelace:chat",
                ["stream"] = true,
                ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = Prompt }),
            }),
        };
        request.Headers.Add("traceparent", $"00-{trace}-{ActivitySpanId.CreateRandom()}-01");
        using var response = await client.SendAsync(request);
        var answer = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, answer);
        // The server's span ends after the response; the gateway's spans end before its last byte.
        var requestId = response.Headers.GetValues("x-request-id").Single();

        var names = spans.Select(s => s.OperationName).ToList();
        foreach (var stage in new[] { "lattice.auth", "lattice.request", "lattice.route", "lattice.admission", "lattice.dispatch", "lattice.relay" })
        {
            Assert.True(names.Contains(stage), $"No {stage} span among: {string.Join(", ", names)}");
        }
        var dispatch = spans.Single(s => s.OperationName == "lattice.request");
        Assert.Equal(requestId, dispatch.GetTagItem("lattice.request_id"));
        Assert.Equal(200, dispatch.GetTagItem("http.response.status_code"));
        Assert.Equal(dispatch.SpanId, spans.Single(s => s.OperationName == "lattice.relay").ParentSpanId);
        var values = spans.SelectMany(s => s.TagObjects).Select(t => t.Value?.ToString() ?? "").ToList();
        Assert.DoesNotContain(values, v => v.Contains("secret prompt", StringComparison.Ordinal));
        Assert.DoesNotContain(values, v => v.Contains(server.A.Key, StringComparison.Ordinal));
    }

    private static StringContent JsonContent(JsonNode body) => new(body.ToJsonString(), System.Text.Encoding.UTF8, "application/json");
}
