using System.Text.Json;
using Lattice.Gateway.Changes;
using Lattice.Gateway.Persistence;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Lattice.Gateway.Telemetry;

/// <summary>
/// <c>/readyz</c>: whether this node can serve — its database reachable and migrated, its change feed read recently,
/// its Redis answering when one is configured. 200 when every check passes, else 503; the JSON body names each check
/// and its state. <c>/healthz</c> stays a liveness answer that asks nothing of anyone.
/// </summary>
public static partial class Readiness
{
    public const string Database = "database";
    public const string ChangeFeed = "change_feed";
    public const string Redis = "redis";

    /// <summary>How long one check may take before it counts as failed.</summary>
    public static readonly TimeSpan CheckTimeout = TimeSpan.FromSeconds(5);

    public static IServiceCollection AddReadiness(this IServiceCollection services)
    {
        services.AddHealthChecks()
            .AddCheck<DatabaseCheck>(Database, timeout: CheckTimeout)
            .AddCheck<ChangeFeedCheck>(ChangeFeed, timeout: CheckTimeout)
            .AddCheck<RedisCheck>(Redis, timeout: CheckTimeout);
        return services;
    }

    public static IEndpointConventionBuilder MapReadiness(this IEndpointRouteBuilder endpoints) =>
        endpoints.MapHealthChecks("/readyz", new HealthCheckOptions
        {
            ResponseWriter = WriteAsync,
            ResultStatusCodes =
            {
                [HealthStatus.Healthy] = StatusCodes.Status200OK,
                [HealthStatus.Degraded] = StatusCodes.Status200OK,
                [HealthStatus.Unhealthy] = StatusCodes.Status503ServiceUnavailable,
            },
        });

    /// <summary><c>{"status":"ready"|"not_ready","failing":[…],"checks":{"database":{"status":"ok","detail":"…"},…}}</c></summary>
    private static async Task WriteAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json";
        context.Response.Headers.CacheControl = "no-store";
        await using var json = new Utf8JsonWriter(context.Response.Body);
        json.WriteStartObject();
        json.WriteString("status", report.Status == HealthStatus.Unhealthy ? "not_ready" : "ready");
        json.WriteStartArray("failing");
        foreach (var (name, entry) in report.Entries)
        {
            if (entry.Status == HealthStatus.Unhealthy)
            {
                json.WriteStringValue(name);
            }
        }
        json.WriteEndArray();
        json.WriteStartObject("checks");
        foreach (var (name, entry) in report.Entries)
        {
            json.WriteStartObject(name);
            json.WriteString("status", entry.Status == HealthStatus.Unhealthy ? "failing" : "ok");
            json.WriteString("detail", entry.Description);
            json.WriteEndObject();
        }
        json.WriteEndObject();
        json.WriteEndObject();
    }

    /// <summary>The database answers, and has no migration pending (a node of a newer build must migrate it first).</summary>
    internal sealed partial class DatabaseCheck(LatticeDbContext db, ILogger<DatabaseCheck> logger) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            try
            {
                var pending = (await db.Database.GetPendingMigrationsAsync(cancellationToken)).Count();
                return pending == 0
                    ? HealthCheckResult.Healthy("reachable and migrated")
                    : HealthCheckResult.Unhealthy($"{pending} migration(s) pending");
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested)
            {
                // The reason goes to the log, not to the anonymous caller (it can name hosts and users).
                LogUnreachable(logger, e.GetType().Name, e.Message);
                return HealthCheckResult.Unhealthy("unreachable");
            }
        }

        [LoggerMessage(EventId = 9701, Level = LogLevel.Warning, Message = "Readiness: the database is unreachable ({Type}: {Error})")]
        private static partial void LogUnreachable(ILogger logger, string type, string error);
    }

    /// <summary>The change feed was read to the end recently: this node sees what other nodes write.</summary>
    internal sealed class ChangeFeedCheck(ChangeFeedPoller poller, TimeProvider time) : IHealthCheck
    {
        /// <summary>Forty polling intervals: a feed this far behind is stuck, not slow.</summary>
        public static readonly TimeSpan StaleAfter = TimeSpan.FromSeconds(10);

        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            if (poller.LastReadAt is not { } last)
            {
                return Task.FromResult(HealthCheckResult.Unhealthy("not started"));
            }
            var behind = time.GetUtcNow() - last;
            return Task.FromResult(behind <= StaleAfter
                ? HealthCheckResult.Healthy("read recently")
                : HealthCheckResult.Unhealthy($"not read for {(long)behind.TotalSeconds} s"));
        }
    }

    /// <summary>Redis answers a PING, when the gateway uses one.</summary>
    internal sealed class RedisCheck(RedisStore redis) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            if (!redis.Configured)
            {
                return HealthCheckResult.Healthy("not configured");
            }
            return await redis.PingAsync().WaitAsync(cancellationToken)
                ? HealthCheckResult.Healthy("answering")
                : HealthCheckResult.Unhealthy("not answering");
        }
    }
}
