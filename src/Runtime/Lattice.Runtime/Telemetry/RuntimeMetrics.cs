using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Lattice.Runtime.Telemetry;

/// <summary>
/// The daemon's metrics (meter <see cref="MeterName"/>), all in one place: dispatches by task, model and outcome, their
/// duration and time to first chunk, the dispatches running now, and the link to the gateway. Labels are the task and
/// model the daemon serves (a model it does not serve is <see cref="Unsupported"/>) — never anything from a request's
/// body. Every recording checks its instrument is listened to first, so without the scrape endpoint a dispatch pays a
/// field read.
/// </summary>
public sealed class RuntimeMetrics : IDisposable
{
    public const string MeterName = "Lattice.Runtime";

    /// <summary>Task and model label of a dispatch for a model this daemon does not serve (the name is the gateway's).</summary>
    public const string Unsupported = "unsupported";

    /// <summary>How a dispatch ended: the <c>outcome</c> label.</summary>
    public static class Outcomes
    {
        /// <summary>The engine finished and the End was sent.</summary>
        public const string Served = "served";
        /// <summary>The gateway cancelled it (its client left); the End says so.</summary>
        public const string Cancelled = "cancelled";
        /// <summary>The engine failed: an Error was sent.</summary>
        public const string EngineError = "engine_error";
        /// <summary>The link dropped while it ran: nobody was left to answer.</summary>
        public const string LinkLost = "link_lost";
        /// <summary>Refused before any engine ran: a model not served, a sealed request it cannot open, an unreadable frame.</summary>
        public const string Refused = "refused";
    }

    private static readonly double[] LatencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

    private readonly Meter _meter;
    private readonly Counter<long> _dispatches;
    private readonly Histogram<double> _duration;
    private readonly Histogram<double> _firstChunk;
    private readonly UpDownCounter<long> _active;
    private readonly Counter<long> _reconnects;
    private int _connected;

    public RuntimeMetrics() : this(MeterName)
    {
    }

    /// <summary>A meter of another name: tests give each daemon its own, so parallel tests do not count each other's dispatches.</summary>
    internal RuntimeMetrics(string meterName)
    {
        _meter = new Meter(meterName);
        _dispatches = _meter.CreateCounter<long>("lattice.runtime.dispatches", "{dispatch}",
            "Dispatches this daemon answered, by task, model and outcome (served, cancelled, engine_error, link_lost, refused).");
        _duration = _meter.CreateHistogram("lattice.runtime.dispatch.duration", "s",
            "From the dispatch's arrival to its End or Error (waiting for a free slot included).",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        _firstChunk = _meter.CreateHistogram("lattice.runtime.dispatch.time_to_first_chunk", "s",
            "From the dispatch's arrival to the answer's first bytes queued for the gateway.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        _active = _meter.CreateUpDownCounter<long>("lattice.runtime.dispatches.active", "{dispatch}",
            "Dispatches running or waiting for a slot now.");
        _meter.CreateObservableGauge("lattice.runtime.link.connected", () => Volatile.Read(ref _connected), null,
            "1 while the link to a gateway is up (welcomed), else 0.");
        _reconnects = _meter.CreateCounter<long>("lattice.runtime.link.reconnects", "{attempt}",
            "Connection attempts made after a link ended or an attempt failed.");
    }

    /// <summary>The meter's name, for a <c>MeterProvider</c> to listen to.</summary>
    public string Name => _meter.Name;

    /// <summary>A dispatch was accepted for an engine; <see cref="Finished"/> follows with the same task and model.</summary>
    public void Started(string task, string model)
    {
        if (_active.Enabled)
        {
            _active.Add(1, new TagList { { "task", task }, { "model", model } });
        }
    }

    /// <summary>A dispatch that <see cref="Started"/> ended with <paramref name="outcome"/> (one of <see cref="Outcomes"/>).</summary>
    public void Finished(string task, string model, string outcome, TimeSpan duration)
    {
        if (_active.Enabled)
        {
            _active.Add(-1, new TagList { { "task", task }, { "model", model } });
        }
        if (_dispatches.Enabled || _duration.Enabled)
        {
            var tags = new TagList { { "task", task }, { "model", model }, { "outcome", outcome } };
            _dispatches.Add(1, tags);
            _duration.Record(duration.TotalSeconds, tags);
        }
    }

    /// <summary>A dispatch refused before it started (it never counted as active).</summary>
    public void Refused(string task, string model)
    {
        if (_dispatches.Enabled)
        {
            _dispatches.Add(1, new TagList { { "task", task }, { "model", model }, { "outcome", Outcomes.Refused } });
        }
    }

    /// <summary>The answer's first bytes were queued, <paramref name="elapsed"/> after the dispatch arrived.</summary>
    public void FirstChunk(string task, string model, TimeSpan elapsed)
    {
        if (_firstChunk.Enabled)
        {
            _firstChunk.Record(elapsed.TotalSeconds, new TagList { { "task", task }, { "model", model } });
        }
    }

    /// <summary>The link came up (welcomed) or went down.</summary>
    public void Link(bool connected) => Volatile.Write(ref _connected, connected ? 1 : 0);

    /// <summary>The daemon tries to connect again after a link ended or an attempt failed.</summary>
    public void Reconnecting() => _reconnects.Add(1);

    public void Dispose() => _meter.Dispose();
}
