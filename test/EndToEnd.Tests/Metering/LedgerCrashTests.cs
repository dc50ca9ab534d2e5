using System.Collections.Concurrent;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Lattice.Testing;
using Microsoft.Data.Sqlite;

namespace Lattice.EndToEnd.Tests.Metering;

/// <summary>
/// The ledger against the worst a machine does to a gateway: a real gateway process under load from many
/// connections is killed with SIGKILL, started again on the same data directory, and its ledger is reconciled
/// against the request ids the clients collected.
/// </summary>
public sealed class LedgerCrashTests : IAsyncLifetime
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(180);
    private const string UpstreamKey = "crash-upstream-key";
    private readonly string _dataDir = Path.Combine(Path.GetTempPath(), "lattice-crash-" + Guid.NewGuid().ToString("N"));
    private ProcessHost? _standIn;
    private string _standInUrl = "";

    public async Task InitializeAsync()
    {
        var standInPort = ProcessHost.FreeTcpPort();
        _standIn = await ProcessHost.StartDotnetAsync("Lattice.StandIn.OpenAi",
            ["--urls", $"http://127.0.0.1:{standInPort}", "--api-key", UpstreamKey, "--no-record"],
            null, line => line.StartsWith("standin listening on", StringComparison.Ordinal), StartTimeout);
        _standInUrl = $"http://127.0.0.1:{standInPort}/v1";
    }

    public async Task DisposeAsync()
    {
        if (_standIn is not null)
        {
            await _standIn.DisposeAsync();
        }
        try
        {
            Directory.Delete(_dataDir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private async Task<(ProcessHost Gateway, Uri BaseUrl, string ApiKey, string AdminKey)> StartGatewayAsync()
    {
        var port = ProcessHost.FreeTcpPort();
        var gateway = await ProcessHost.StartAsync(ProcessHost.DotnetHost,
            [StackFixture.LatticeDll, "up", "--no-daemon", "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--data-dir", _dataDir],
            new Dictionary<string, string?> { ["Lattice__Credentials__standin"] = UpstreamKey },
            line => line.StartsWith("LATTICE_API_KEY=", StringComparison.Ordinal), StartTimeout);
        var env = File.ReadAllLines(Path.Combine(_dataDir, "env"))
            .Where(l => l.Contains('=') && !l.StartsWith('#'))
            .ToDictionary(l => l[..l.IndexOf('=')], l => l[(l.IndexOf('=') + 1)..]);
        return (gateway, new Uri($"http://127.0.0.1:{port}/"), env["LATTICE_API_KEY"], env["LATTICE_ADMIN_KEY"]);
    }

    private async Task AddModelAsync(Uri baseUrl, string adminKey, string id, string upstreamModel)
    {
        using var admin = new HttpClient { BaseAddress = baseUrl, Timeout = TimeSpan.FromSeconds(30) };
        admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", adminKey);
        var body = new JsonObject
        {
            ["id"] = id,
            ["owned_by"] = "crash",
            ["offers"] = new JsonArray(new JsonObject { ["base_url"] = _standInUrl, ["credential"] = "standin", ["upstream_model"] = upstreamModel }),
        };
        using var response = await admin.PostAsJsonAsync("admin/v1/models", body);
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Kill_9_under_load_loses_no_finished_record_and_records_each_request_in_flight_once()
    {
        var (gateway, baseUrl, apiKey, adminKey) = await StartGatewayAsync();
        await AddModelAsync(baseUrl, adminKey, "lovelace:fast", "standin-chat");
        // Streams that take seconds: some are always in flight when the gateway dies.
        await AddModelAsync(baseUrl, adminKey, "lovelace:drip", "standin-drip");

        var started = new ConcurrentDictionary<string, byte>();
        // Each finished request with the order in which its client saw it finish.
        var completed = new ConcurrentDictionary<string, int>();
        var finishes = 0;
        var enoughDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        // Set when, after enough requests finished, a slow stream has its headers: the kill then lands mid-stream.
        var streamOpen = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var stop = new CancellationTokenSource();
        const int Connections = 24;
        const int CompletedBeforeKill = 400;
        const int MaxRequestsPerConnection = 2_000;

        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = Connections }) { BaseAddress = baseUrl, Timeout = Timeout.InfiniteTimeSpan };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);

        async Task ClientAsync(int n)
        {
            for (var i = 0; i < MaxRequestsPerConnection && !stop.IsCancellationRequested; i++)
            {
                var drip = (n + i) % 6 == 0;
                var json = drip
                    ? """{"model":"lovelace:drip","stream":true,"messages":[{"role":"user","content":"one two three four five six"}]}"""
                    : """{"model":"lovelace:fast","messages":[{"role":"user","content":"hello there"}]}""";
                try
                {
                    using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = new StringContent(json, Encoding.UTF8, "application/json") };
                    using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, stop.Token);
                    var id = response.Headers.GetValues("x-request-id").Single();
                    started.TryAdd(id, 0);
                    if (drip && enoughDone.Task.IsCompleted)
                    {
                        streamOpen.TrySetResult(id);
                    }
                    var body = await response.Content.ReadAsStringAsync(stop.Token);
                    if (response.IsSuccessStatusCode && (drip ? body.Contains("data: [DONE]", StringComparison.Ordinal) : body.Contains("\"usage\"", StringComparison.Ordinal)))
                    {
                        completed.TryAdd(id, Interlocked.Increment(ref finishes));
                        if (completed.Count >= CompletedBeforeKill)
                        {
                            enoughDone.TrySetResult();
                        }
                    }
                }
                catch (Exception ex) when (ex is HttpRequestException or IOException or OperationCanceledException)
                {
                    return; // the gateway is gone
                }
            }
        }

        var clients = Enumerable.Range(0, Connections).Select(n => Task.Run(() => ClientAsync(n))).ToArray();
        await enoughDone.Task.WaitAsync(TimeSpan.FromMinutes(5));
        var openStream = await streamOpen.Task.WaitAsync(TimeSpan.FromMinutes(2));

        // What the clients saw finish before the kill; anything finishing during it is in flight.
        var finishedBeforeKill = completed.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        Process(gateway).Kill(); // SIGKILL: no shutdown hook runs
        await gateway.WaitForExitAsync(TimeSpan.FromSeconds(60));
        await stop.CancelAsync();
        await Task.WhenAll(clients).WaitAsync(TimeSpan.FromMinutes(2));
        await gateway.DisposeAsync();

        var (restarted, _, _, _) = await StartGatewayAsync();
        await using (restarted)
        {
            // Recovery runs before the restarted gateway serves, so the ledger is complete once it is up.
            var records = ReadLedger();
            // A client can read the last byte of an answer a moment before the gateway journals how it ended; that
            // moment ends before the same connection's next request is taken, so of the requests that finished, at
            // most the last one per connection may still show what was journaled at dispatch. None is ever missing.
            var last = finishedBeforeKill.Values.DefaultIfEmpty(0).Max();
            foreach (var (id, order) in finishedBeforeKill)
            {
                Assert.True(records.TryGetValue(id, out var status), $"finished request {id} has no usage record");
                if (order <= last - Connections)
                {
                    Assert.Equal("ok", status);
                }
                else
                {
                    Assert.Contains(status, new[] { "ok", "interrupted" });
                }
            }
            // Every request the gateway had answered headers for is recorded once: finished, or interrupted.
            var inFlight = started.Keys.Where(id => !completed.ContainsKey(id)).ToList();
            Assert.Contains(openStream, inFlight);
            foreach (var id in inFlight)
            {
                Assert.True(records.TryGetValue(id, out var status), $"request {id} in flight at the kill has no usage record");
                Assert.Contains(status, new[] { "ok", "interrupted" });
            }
            Assert.Contains("interrupted", records.Values);
            // Nothing invented: every record is a request some client sent.
            Assert.All(records.Keys, id => Assert.StartsWith("req_", id));
        }
    }

    private static System.Diagnostics.Process Process(ProcessHost host) => System.Diagnostics.Process.GetProcessById(host.ProcessId);

    /// <summary>Request id → status, straight from the database (primary key: a request id can appear only once).</summary>
    private Dictionary<string, string> ReadLedger()
    {
        using var connection = new SqliteConnection($"Data Source={Path.Combine(_dataDir, "lattice.db")};Mode=ReadOnly;Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT RequestId, Status FROM usage_records";
        using var reader = command.ExecuteReader();
        var records = new Dictionary<string, string>(StringComparer.Ordinal);
        while (reader.Read())
        {
            Assert.True(records.TryAdd(reader.GetString(0), reader.GetString(1)), "a request id appears twice");
        }
        return records;
    }
}
