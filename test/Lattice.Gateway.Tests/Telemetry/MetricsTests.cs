using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Telemetry;
using Lattice.Gateway.Tests.Identity;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Telemetry;

/// <summary>
/// <c>/metrics</c> on a gateway on a real port: refused without the configured token, and after real traffic its request,
/// token and cost counters say what the usage ledger says for the same requests.
/// </summary>
public sealed class MetricsTests : IAsyncLifetime
{
    private const string Token = "metrics-token-0123456789abcdef";
    // A model of this class alone: other gateways in this test process record under their own models.
    private const string Model = "lovelace:metrics-tests";

    private readonly OAuthGateway _server = OAuthGateway.With(new() { ["Lattice:Metrics:Token"] = Token });

    public async Task InitializeAsync()
    {
        await _server.InitializeAsync();
        await OAuthGateway.PostAsync(_server.Admin, "admin/v1/models", new JsonObject
        {
            ["id"] = Model,
            ["offers"] = new JsonArray(new JsonObject
            {
                ["base_url"] = _server.StandInUrl + "/v1",
                ["upstream_model"] = "standin-chat",
                ["credential"] = "standin",
                // Priced, so that the cost counter has something to say.
                ["prices"] = new JsonObject { ["input_per_mtok"] = 0.15, ["output_per_mtok"] = 0.60 },
            }),
        });
    }

    public Task DisposeAsync() => _server.DisposeAsync();

    [Fact]
    public async Task Metrics_are_refused_without_the_token()
    {
        var developer = await Credentials.KeyAsync(_server, _server.A.WorkspaceId, Scopes.Known);
        foreach (var credential in new[] { null, "not-the-metrics-token-at-all", developer, OAuthGateway.AdminKey })
        {
            using var client = _server.Client(credential);
            using var response = await client.GetAsync("metrics");
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.Unauthorized, $"{credential}: {(int)response.StatusCode} {body}");
            Assert.Equal("invalid_api_key", JsonNode.Parse(body)!["error"]!["code"]!.GetValue<string>());
            Assert.DoesNotContain("lattice_", body, StringComparison.Ordinal);
        }
        using var scraper = _server.Client(Token);
        using var scraped = await scraper.GetAsync("metrics");
        Assert.Equal(HttpStatusCode.OK, scraped.StatusCode);
        Assert.StartsWith("text/plain", scraped.Content.Headers.ContentType?.MediaType, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Request_and_token_counters_equal_the_ledger()
    {
        var from = DateTimeOffset.UtcNow.AddMinutes(-5).ToUnixTimeSeconds();
        // Active streams are labelled by task alone, which other gateways in this test process share (the exporter listens
        // to every meter of the name), so they are read from this gateway's own meter.
        long streamsActive = 0, streamsStarted = 0;
        var factory = _server.Services.GetRequiredService<IMeterFactory>();
        using var streams = new MeterListener
        {
            InstrumentPublished = (instrument, listener) =>
            {
                if (ReferenceEquals(instrument.Meter.Scope, factory) && instrument.Name == "lattice.streams.active")
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            },
        };
        streams.SetMeasurementEventCallback<long>((_, delta, _, _) =>
        {
            Interlocked.Add(ref streamsActive, delta);
            if (delta > 0)
            {
                Interlocked.Increment(ref streamsStarted);
            }
        });
        streams.Start();
        using var client = _server.Client(_server.A.Key);
        for (var i = 0; i < 3; i++)
        {
            await SendAsync(client, stream: false, HttpStatusCode.OK);
        }
        for (var i = 0; i < 2; i++)
        {
            await SendAsync(client, stream: true, HttpStatusCode.OK);
        }
        // A model nobody has: counted, under a label that is not the client's made-up name.
        await SendAsync(client, stream: false, HttpStatusCode.NotFound, model: "lovelace:no-such-model-for-metrics");

        await _server.Services.GetRequiredService<UsageLedger>().FlushAsync();
        var reader = await Credentials.KeyAsync(_server, _server.A.WorkspaceId, [Scopes.UsageRead]);
        using var usageClient = _server.Client(reader);
        var to = DateTimeOffset.UtcNow.AddMinutes(5).ToUnixTimeSeconds();
        var (status, text) = await Credentials.SendAsync(usageClient, "GET", $"v1/usage?start_time={from}&end_time={to}&bucket_width=1d&group_by=model");
        Assert.True(status == HttpStatusCode.OK, text);
        var results = JsonNode.Parse(text)!["data"]!.AsArray().SelectMany(b => b!["results"]!.AsArray())
            .Where(r => r!["model"]?.GetValue<string>() == Model).ToList();
        long Ledger(string field) => results.Sum(r => r![field]!.GetValue<long>());
        Assert.Equal(5, Ledger("num_model_requests"));
        Assert.True(Ledger("input_tokens") > 0 && Ledger("output_tokens") > 0, text);

        using var scraper = _server.Client(Token);
        var metrics = Prometheus.Parse(await scraper.GetStringAsync("metrics"));
        var model = ("model", Model);
        Assert.Equal(Ledger("num_model_requests"), metrics.Sum("lattice_requests_total", model));
        Assert.Equal(5, metrics.Sum("lattice_requests_total", model, ("status", "200"), ("outcome", "served"), ("surface", "openai"), ("task", "chat.completions")));
        Assert.Equal(Ledger("input_tokens"), metrics.Sum("lattice_tokens_total", model, ("type", "input")));
        Assert.Equal(Ledger("output_tokens"), metrics.Sum("lattice_tokens_total", model, ("type", "output")));
        // What the requests cost, as the ledger priced them (a sum in pico-USD, in dollars once).
        var cost = results.Sum(r => decimal.Parse(r!["cost_usd"]!.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(cost > 0, text);
        Assert.Equal((double)cost, metrics.Sum("lattice_cost_usd_total", model), 12);
        Assert.Equal(5, metrics.Sum("lattice_request_duration_seconds_count", model));
        Assert.Equal(5, metrics.Sum("lattice_request_time_to_first_byte_seconds_count", model));
        Assert.True(metrics.Sum("lattice_requests_total", ("model", GatewayMetrics.UnroutedModel), ("status", "404"), ("outcome", "route")) >= 1);
        Assert.DoesNotContain(metrics.Samples, s => s.Labels.Values.Contains("lovelace:no-such-model-for-metrics"));
        // Every stream that started has ended.
        Assert.True(metrics.Has("lattice_streams_active"));
        Assert.Equal((2, 0), (Interlocked.Read(ref streamsStarted), Interlocked.Read(ref streamsActive)));
        // State read at collection time.
        Assert.True(metrics.Has("lattice_ledger_queue_depth"));
        Assert.True(metrics.Has("lattice_runtime_links"));
    }

    private static async Task SendAsync(HttpClient client, bool stream, HttpStatusCode expected, string model = Model)
    {
        var body = new JsonObject
        {
            ["model"] = model,
            ["stream"] = stream,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "count these words for the metrics" }),
        };
        var (status, text) = await Credentials.SendAsync(client, "POST", "v1/chat/completions", body);
        Assert.True(status == expected, text);
    }
}
