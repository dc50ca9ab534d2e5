using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Lattice.Gateway.Tests.Billing;

/// <summary>
/// Stripe's <c>POST /v1/billing/meter_events</c> on loopback, as Stripe speaks it: a form-encoded body
/// (<c>event_name</c>, <c>identifier</c>, <c>timestamp</c>, <c>payload[stripe_customer_id]</c>, <c>payload[value]</c>),
/// <c>Authorization: Bearer sk_test_…</c>, a <c>billing.meter_event</c> object back, and Stripe's error envelope
/// <c>{"error":{"type","message","code"}}</c>. Scriptable: fail the next requests with 429 or 500, or hold every
/// request after a number of accepted events until released.
/// </summary>
public sealed class StripeStandIn : IAsyncDisposable
{
    public const string ApiKey = "sk_test_standin_51Lattice0123456789";

    /// <summary>One meter event Stripe accepted, and the test clock's time when it arrived.</summary>
    public sealed record MeterEvent(string EventName, string Identifier, string CustomerId, string Value, long Timestamp, DateTimeOffset ReceivedAt);

    /// <summary>Every request that reached the endpoint: its identifier, the status it got, and when.</summary>
    public sealed record Attempt(string Identifier, int Status, DateTimeOffset ReceivedAt);

    private readonly WebApplication _app;
    private readonly ConcurrentQueue<int> _failures = new();
    private readonly object _gate = new();
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _holdAfter = int.MaxValue;

    public ConcurrentQueue<MeterEvent> Accepted { get; } = new();
    public ConcurrentQueue<Attempt> Attempts { get; } = new();
    public int Held => _held;
    private int _held;

    public string Url { get; }

    /// <summary>Stamps each request, so a test can check how long the client waited between attempts.</summary>
    public TimeProvider Clock { get; set; } = TimeProvider.System;

    private StripeStandIn(WebApplication app)
    {
        _app = app;
        Url = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/');
    }

    public static async Task<StripeStandIn> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        var app = builder.Build();
        StripeStandIn? standIn = null;
        app.MapPost("/v1/billing/meter_events", context => standIn!.HandleAsync(context));
        await app.StartAsync();
        standIn = new StripeStandIn(app);
        return standIn;
    }

    /// <summary>The next <paramref name="count"/> requests get <paramref name="status"/> (429 or 500), whatever they carry.</summary>
    public void FailNext(int status, int count = 1)
    {
        for (var i = 0; i < count; i++)
        {
            _failures.Enqueue(status);
        }
    }

    /// <summary>Once <paramref name="accepted"/> events were accepted, every request waits until <see cref="Release"/>.</summary>
    public void HoldAfter(int accepted) => _holdAfter = accepted;

    public void Release()
    {
        _holdAfter = int.MaxValue;
        _release.TrySetResult();
    }

    /// <summary>Waits until <paramref name="condition"/> holds, re-checking whenever a request arrives; false when <paramref name="timeout"/> passes first.</summary>
    public async Task<bool> WaitUntilAsync(Func<bool> condition, TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        while (!condition())
        {
            Task changed;
            lock (_gate)
            {
                changed = _changed.Task;
            }
            if (condition())
            {
                return true;
            }
            try
            {
                await changed.WaitAsync(cancel.Token);
            }
            catch (OperationCanceledException)
            {
                return condition();
            }
        }
        return true;
    }

    private void Changed()
    {
        TaskCompletionSource done;
        lock (_gate)
        {
            done = _changed;
            _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        done.TrySetResult();
    }

    private async Task HandleAsync(HttpContext context)
    {
        var receivedAt = Clock.GetUtcNow();
        context.Response.Headers["Request-Id"] = "req_" + Guid.NewGuid().ToString("N")[..14];
        if (context.Request.Headers.Authorization.ToString() != "Bearer " + ApiKey)
        {
            await ErrorAsync(context, 401, "invalid_request_error", null, "Invalid API Key provided: " + Redact(context.Request.Headers.Authorization.ToString()));
            return;
        }
        if (!context.Request.HasFormContentType)
        {
            await ErrorAsync(context, 400, "invalid_request_error", "parameter_missing", "Missing required param: event_name.");
            return;
        }
        var form = await context.Request.ReadFormAsync(context.RequestAborted);
        var identifier = form["identifier"].ToString();
        if (Accepted.Count >= _holdAfter)
        {
            Interlocked.Increment(ref _held);
            Changed();
            await _release.Task.WaitAsync(context.RequestAborted);
        }
        if (_failures.TryDequeue(out var failure))
        {
            Attempts.Enqueue(new Attempt(identifier, failure, receivedAt));
            if (failure == 429)
            {
                await ErrorAsync(context, 429, "invalid_request_error", "rate_limit", "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.");
            }
            else
            {
                await ErrorAsync(context, failure, "api_error", null, "An unknown error occurred");
            }
            Changed();
            return;
        }
        foreach (var required in new[] { "event_name", "payload[stripe_customer_id]", "payload[value]" })
        {
            if (string.IsNullOrEmpty(form[required]))
            {
                Attempts.Enqueue(new Attempt(identifier, 400, receivedAt));
                await ErrorAsync(context, 400, "invalid_request_error", "parameter_missing", $"Missing required param: {required}.", required);
                Changed();
                return;
            }
        }
        var timestamp = long.Parse(form["timestamp"].ToString(), NumberStyles.None, CultureInfo.InvariantCulture);
        var accepted = new MeterEvent(form["event_name"]!, identifier, form["payload[stripe_customer_id]"]!, form["payload[value]"]!, timestamp, receivedAt);
        Attempts.Enqueue(new Attempt(identifier, 200, receivedAt));
        Accepted.Enqueue(accepted);
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(new JsonObject
        {
            ["object"] = "billing.meter_event",
            ["created"] = receivedAt.ToUnixTimeSeconds(),
            ["event_name"] = accepted.EventName,
            ["identifier"] = accepted.Identifier,
            ["livemode"] = false,
            ["payload"] = new JsonObject { ["stripe_customer_id"] = accepted.CustomerId, ["value"] = accepted.Value },
            ["timestamp"] = accepted.Timestamp,
        }.ToJsonString());
        Changed();
    }

    private static string Redact(string authorization) =>
        authorization.Length > 4 ? new string('*', Math.Max(0, authorization.Length - 4)) + authorization[^4..] : "****";

    private static async Task ErrorAsync(HttpContext context, int status, string type, string? code, string message, string? param = null)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        var error = new JsonObject { ["message"] = message, ["type"] = type };
        if (code is not null)
        {
            error["code"] = code;
        }
        if (param is not null)
        {
            error["param"] = param;
        }
        await context.Response.WriteAsync(new JsonObject { ["error"] = error }.ToJsonString());
    }

    public async ValueTask DisposeAsync()
    {
        _release.TrySetResult();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
