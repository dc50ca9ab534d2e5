using System.Diagnostics;
using System.Security.Claims;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.Identity;
using Lattice.Gateway.Persistence;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Lattice.Bench;

/// <summary>
/// What authentication costs per request, in process: the gateway's own <see cref="EndpointAuth.RequireAsync(HttpContext, string, string?)"/>
/// (per-address failure limiter, credential check, scope check) on a request carrying a developer key, an access
/// token seen before, and an access token seen for the first time (RS256 signature check), with a revocation set
/// of realistic size. Real services from the gateway's composition root and a real SQLite database.
/// </summary>
internal static class AuthBench
{
    public static async Task<int> RunAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        var dataDir = Path.Combine(Path.GetTempPath(), "lattice-authbench-" + Guid.NewGuid().ToString("N"));
        try
        {
            var builder = GatewayApp.CreateBuilder([]);
            builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["Lattice:DataDirectory"] = dataDir });
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
            await using var app = GatewayApp.Build(builder);
            var services = app.Services;
            string key;
            await using (var scope = services.CreateAsyncScope())
            {
                await scope.ServiceProvider.GetRequiredService<DatabaseInitializer>().InitializeAsync(cancellationToken);
                var dev = await scope.ServiceProvider.GetRequiredService<DatabaseInitializer>().BootstrapDevAsync(cancellationToken)
                    ?? throw new BenchException("the fresh database already had a workspace");
                key = dev.ApiKey;
            }

            // A revocation set of realistic size: 100,000 revoked grants and tokens.
            var revoked = services.GetRequiredService<RevocationSet>();
            for (var i = 0; i < 100_000; i++)
            {
                revoked.Apply(RevocationSet.GrantKind, "revoked-grant-" + i);
                revoked.Apply(RevocationSet.TokenKind, "revoked-token-" + i);
            }

            var signing = services.GetRequiredService<SigningKeys>().Signing;
            var handler = new JsonWebTokenHandler();
            string Mint(int n) => handler.CreateToken(new SecurityTokenDescriptor
            {
                TokenType = "at+jwt",
                Audience = AccessTokenValidator.Audience,
                Issuer = "http://127.0.0.1/",
                Expires = DateTime.UtcNow.AddHours(1),
                SigningCredentials = new SigningCredentials(signing, SecurityAlgorithms.RsaSha256),
                Subject = new ClaimsIdentity(
                [
                    new Claim("sub", "usr_bench"),
                    new Claim("client_id", "app_bench"),
                    new Claim("scope", "lattice:compute:inference lattice:compute:streaming"),
                    new Claim(AccessTokenValidator.WorkspaceClaim, "ws_bench"),
                    new Claim("oi_au_id", "grant-" + n),
                    new Claim("oi_tkn_id", "token-" + n),
                ]),
            });

            // Header values are built up front, so the timed loop measures only the gateway.
            var cold = Enumerable.Range(0, options.Quick ? 300 : 3_000).Select(n => "Bearer " + Mint(n)).ToArray();
            var warm = "Bearer " + Mint(-1);
            key = "Bearer " + key;
            var iterations = options.Quick ? 50_000 : 500_000;

            Console.WriteLine($"Authentication cost per request (in process; {Environment.ProcessorCount} cores; {iterations:N0} iterations; revocation set: 200,000 entries)");
            Console.WriteLine();
            Console.WriteLine("| Credential | mean µs | p50 µs | p99 µs | max µs | allocated B/op |");
            Console.WriteLine("|---|--:|--:|--:|--:|--:|");
            var rows = new List<(string, Stats)>
            {
                ("none (setting and reading the header: the loop's own cost)", Measure(services, _ => "", iterations, baseline: true)),
                ("developer key `sk_…`", Measure(services, _ => key, iterations)),
                ("access token, seen before", Measure(services, _ => warm, iterations)),
                ("access token, first sight (RS256 check)", Measure(services, i => cold[i], cold.Length)),
            };
            foreach (var (name, s) in rows)
            {
                Console.WriteLine($"| {name} | {s.Mean:F2} | {s.P50:F2} | {s.P99:F2} | {s.Max:F1} | {s.BytesPerOp:F0} |");
            }
            var worstHot = Math.Max(rows[1].Item2.P99, rows[2].Item2.P99);
            Console.WriteLine();
            Console.WriteLine($"Target: authentication adds ≤ 50 µs per request. Hot path p99 (key, known token): {worstHot:F2} µs — {(worstHot <= 50 ? "met" : "MISSED")}; first sight of a token: p50 {rows[3].Item2.P50:F1} µs (once per token).");
            return options.Check && worstHot > 50 ? 3 : 0;
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            try
            {
                Directory.Delete(dataDir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private sealed record Stats(double Mean, double P50, double P99, double Max, double BytesPerOp);

    private static Stats Measure(IServiceProvider services, Func<int, string> credential, int iterations, bool baseline = false)
    {
        var contexts = new DefaultHttpContext[Math.Min(iterations, 4096)];
        for (var i = 0; i < contexts.Length; i++)
        {
            contexts[i] = new DefaultHttpContext { RequestServices = services };
            contexts[i].Connection.RemoteIpAddress = System.Net.IPAddress.Loopback;
        }
        var times = new double[iterations];
        var tick = 1_000_000.0 / Stopwatch.Frequency;

        // Warm up the code paths (JIT, tiering) on separate credentials where the credential is per-iteration.
        for (var i = 0; i < Math.Min(iterations, 2_000); i++)
        {
            Once(contexts[0], baseline ? "" : credential(0), baseline);
        }

        var allocated = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < iterations; i++)
        {
            var context = contexts[i % contexts.Length];
            var value = credential(i);
            var start = Stopwatch.GetTimestamp();
            Once(context, value, baseline);
            times[i] = (Stopwatch.GetTimestamp() - start) * tick;
        }
        var bytes = (GC.GetAllocatedBytesForCurrentThread() - allocated) / (double)iterations;
        Array.Sort(times);
        return new Stats(times.Average(), times[iterations / 2], times[(int)(iterations * 0.99)], times[^1], bytes);
    }

    private static void Once(DefaultHttpContext context, string credential, bool baseline)
    {
        context.Request.Headers.Authorization = baseline ? default : credential;
        if (baseline)
        {
            _ = context.Request.Headers.Authorization.Count;
            return;
        }
        var pending = EndpointAuth.RequireAsync(context, Scopes.Inference);
        if (!pending.IsCompletedSuccessfully || pending.Result is null)
        {
            throw new BenchException("authentication failed in the benchmark: " + context.Response.StatusCode);
        }
    }
}
