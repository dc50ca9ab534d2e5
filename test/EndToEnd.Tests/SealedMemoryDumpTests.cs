using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Lattice.Client;
using Lattice.Testing;
using Microsoft.Diagnostics.NETCore.Client;
using Microsoft.Extensions.AI;

namespace Lattice.EndToEnd.Tests;

/// <summary>
/// The memory-dump part of the sealed-dispatch proof (docs/sealed-dispatch.md): the gateway as its own process
/// (<c>lattice up --no-daemon</c>), a <c>lattice relay connect</c> daemon forwarding to the stand-in, whose streamed
/// answer stops after its last word until the test lets it finish. While the SDK's chat is in flight — the prompt
/// and the whole answer's text already through the gateway — the test takes a full memory dump of the gateway
/// process and looks for the chat's canary in it, as UTF-8 and as UTF-16.
/// </summary>
[Trait("Category", "Sealed")]
public sealed class SealedMemoryDumpTests : IAsyncLifetime
{
    private const string Gate = "dump";
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(120);
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(180);

    private readonly string _root = Directory.CreateTempSubdirectory("lattice-sealed-dump-").FullName;
    private ProcessHost? _standIn;
    private ProcessHost? _gateway;
    private ProcessHost? _daemon;
    private string _standInUrl = "";
    private string _origin = "";
    private string _apiKey = "";
    private string _latticeId = "";

    public async Task InitializeAsync()
    {
        var standInPort = ProcessHost.FreeTcpPort();
        _standIn = await ProcessHost.StartDotnetAsync("Lattice.StandIn.OpenAi",
            ["--urls", $"http://127.0.0.1:{standInPort}", "--no-record"],
            null, line => line.StartsWith("standin listening on", StringComparison.Ordinal), StartTimeout);
        _standInUrl = $"http://127.0.0.1:{standInPort}";

        var port = ProcessHost.FreeTcpPort();
        var gatewayDir = Path.Combine(_root, "gateway");
        _gateway = await ProcessHost.StartAsync(ProcessHost.DotnetHost,
            [StackFixture.LatticeDll, "up", "--no-daemon", "--port", port.ToString(CultureInfo.InvariantCulture), "--data-dir", gatewayDir],
            null, line => line.StartsWith("LATTICE_API_KEY=", StringComparison.Ordinal), StartTimeout);
        _origin = $"http://127.0.0.1:{port}";
        _apiKey = File.ReadAllLines(Path.Combine(gatewayDir, "env")).Single(l => l.StartsWith("LATTICE_API_KEY=", StringComparison.Ordinal))["LATTICE_API_KEY=".Length..];

        // The daemon's only chat model is the stand-in's pausing one.
        var config = Path.Combine(_root, "daemon.toml");
        await File.WriteAllTextAsync(config, $"""
            [[engines]]
            kind = "openai-compatible"
            base_url = "{_standInUrl}/v1"
              [[engines.models]]
              name = "standin-pause-{Gate}"
            """);
        using var http = new HttpClient { BaseAddress = new Uri(_origin + "/"), Timeout = Timeout };
        http.DefaultRequestHeaders.Authorization = new("Bearer", _apiKey);
        using var created = await http.PostAsJsonAsync("v1/personal-runtimes", new JsonObject { ["displayName"] = "dump", ["executionBackend"] = "local-model" });
        var record = JsonNode.Parse(await created.Content.ReadAsStringAsync())!;
        _latticeId = record["runtime"]!["latticeId"]!.GetValue<string>();
        _daemon = await ProcessHost.StartAsync(ProcessHost.DotnetHost,
            [StackFixture.LatticeDll, "relay", "connect", "--gateway", _origin, "--token", record["bootstrapToken"]!.GetValue<string>(), "--config", config, "--data-dir", Path.Combine(_root, "daemon")],
            null, line => line.Contains("connected as lat_", StringComparison.Ordinal), StartTimeout);
    }

    public async Task DisposeAsync()
    {
        foreach (var process in new[] { _daemon, _gateway, _standIn })
        {
            if (process is not null)
            {
                await process.DisposeAsync();
            }
        }
        Directory.Delete(_root, recursive: true);
    }

    [Fact]
    public async Task A_canary_in_a_sealed_chat_is_nowhere_in_a_full_memory_dump_of_the_gateway_taken_mid_request_while_an_unsealed_one_is()
    {
        using var lattice = new LatticeClient(new LatticeClientOptions { Endpoint = new Uri(_origin), TokenProvider = new DeveloperKeyTokenProvider(_apiKey) });
        var runtime = await lattice.Runtimes.GetAsync(_latticeId);
        var sealedCanary = "sealedcanary" + Guid.NewGuid().ToString("N");
        var plainCanary = "plaincanary" + Guid.NewGuid().ToString("N");

        var sealedDump = await DumpMidStreamAsync(lattice.GetSealedChatClient(runtime), sealedCanary, plainCanary);
        var plainDump = await DumpMidStreamAsync(lattice.WithRuntime(runtime).GetChatClient(), plainCanary, sealedCanary);

        // The positive control: the unsealed chat's canary is in the gateway's memory mid-request — so the dump holds
        // what the gateway handles, and the scan finds it.
        Assert.True(plainDump.Found(plainCanary), $"the unsealed canary is in the gateway's memory (dump of {plainDump.Bytes:N0} bytes)");
        // The sealed chat's canary, in either encoding: not while its request was in flight, nor once the unsealed one was.
        Assert.False(sealedDump.Found(sealedCanary), $"the sealed canary is not in the gateway's memory mid-request (dump of {sealedDump.Bytes:N0} bytes)");
        Assert.False(plainDump.Found(sealedCanary), "the sealed canary is not in the gateway's memory after its request either");
    }

    /// <summary>
    /// Streams a chat whose prompt holds <paramref name="canary"/> (the stand-in echoes it) until the whole answer's
    /// text has arrived; with the stand-in holding the finish back, dumps the gateway and scans the dump for both
    /// canaries; then lets the answer finish.
    /// </summary>
    private async Task<DumpScan> DumpMidStreamAsync(IChatClient chat, string canary, string other)
    {
        using var timeout = new CancellationTokenSource(Timeout);
        var prompt = "keep " + canary;
        var text = new StringBuilder();
        await using var updates = chat.GetStreamingResponseAsync(prompt, cancellationToken: timeout.Token).GetAsyncEnumerator(timeout.Token);
        while (!text.ToString().Contains(canary, StringComparison.Ordinal))
        {
            Assert.True(await updates.MoveNextAsync(), "the answer ended before its last word: " + text);
            text.Append(updates.Current.Text);
        }

        // In flight: the prompt and the answer's text went through the gateway; the stand-in waits at the gate.
        var scan = await DumpScan.TakeAsync(_gateway!.ProcessId, Path.Combine(_root, "gateway.dmp"), [canary, other], timeout.Token);

        using var standIn = new HttpClient { BaseAddress = new Uri(_standInUrl) };
        (await standIn.PostAsync($"/_standin/release?gate={Gate}&count=1", null, timeout.Token)).EnsureSuccessStatusCode();
        while (await updates.MoveNextAsync())
        {
            text.Append(updates.Current.Text);
        }
        Assert.Equal("You said: " + prompt, text.ToString());
        return scan;
    }

    /// <summary>Which strings a full memory dump of a process held (UTF-8 or UTF-16LE), and how big it was.</summary>
    private sealed record DumpScan(long Bytes, IReadOnlySet<string> Present)
    {
        public bool Found(string text) => Present.Contains(text);

        /// <summary>
        /// Asks the process's runtime for a full dump (it runs <c>createdump</c> on itself, allowing it to attach),
        /// scans it for <paramref name="needles"/>, and deletes it.
        /// </summary>
        public static async Task<DumpScan> TakeAsync(int pid, string path, string[] needles, CancellationToken cancellationToken)
        {
            try
            {
                await new DiagnosticsClient(pid).WriteDumpAsync(DumpType.Full, path, logDumpGeneration: false, cancellationToken);
                var patterns = needles.SelectMany(n => new[] { (n, Encoding.UTF8.GetBytes(n)), (n, Encoding.Unicode.GetBytes(n)) }).ToArray();
                var present = new HashSet<string>(StringComparer.Ordinal);
                var overlap = patterns.Max(p => p.Item2.Length) - 1;
                var buffer = new byte[8 << 20];
                await using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.None, 1 << 16, FileOptions.SequentialScan);
                var kept = 0;
                int read;
                while ((read = await file.ReadAsync(buffer.AsMemory(kept), cancellationToken)) > 0)
                {
                    var filled = kept + read;
                    foreach (var (needle, bytes) in patterns)
                    {
                        if (buffer.AsSpan(0, filled).IndexOf(bytes) >= 0)
                        {
                            present.Add(needle);
                        }
                    }
                    // Keep the tail, so a string across two reads is still found.
                    kept = Math.Min(overlap, filled);
                    buffer.AsSpan(filled - kept, kept).CopyTo(buffer);
                }
                Assert.True(file.Length > 16 << 20, $"a full dump of the gateway, not {file.Length:N0} bytes");
                return new DumpScan(file.Length, present);
            }
            finally
            {
                File.Delete(path);
            }
        }
    }
}
