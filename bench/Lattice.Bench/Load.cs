using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;

namespace Lattice.Bench;

/// <summary>
/// Somewhere to send chat completions: the stand-in directly, or the gateway in front of it — through the OpenAI
/// surface, or (<paramref name="anthropic"/>) the same chat as an Anthropic Messages request.
/// </summary>
internal sealed class Target(string name, IPEndPoint endPoint, byte[] nonStreaming, byte[] streaming, bool anthropic = false)
{
    private readonly List<RawHttpConnection> _pool = [];

    public string Name { get; } = name;
    /// <summary>Requests go to <c>/v1/messages</c> in Anthropic's shape, and answers are checked in it.</summary>
    public bool Anthropic { get; } = anthropic;
    public IPEndPoint EndPoint { get; } = endPoint;

    /// <summary>Every response received from this target, warm-up included.</summary>
    public long TotalResponses { get; set; }

    public byte[] Request(ChatMode mode) => mode == ChatMode.Streaming ? streaming : nonStreaming;

    /// <summary>The first <paramref name="count"/> keep-alive connections, opened on first use and reused by every round.</summary>
    public RawHttpConnection[] Connections(int count)
    {
        while (_pool.Count < count)
        {
            var connection = new RawHttpConnection(EndPoint);
            connection.EnsureConnected();
            _pool.Add(connection);
        }
        return [.. _pool.Take(count)];
    }

    public void CloseAll()
    {
        foreach (var c in _pool)
        {
            c.Dispose();
        }
        _pool.Clear();
    }
}

/// <summary>A growable array of latencies in Stopwatch ticks.</summary>
internal sealed class Samples
{
    private long[] _data = new long[4096];

    public int Count { get; private set; }

    public void Add(long value)
    {
        if (Count == _data.Length)
        {
            Array.Resize(ref _data, _data.Length * 2);
        }
        _data[Count++] = value;
    }

    public void AddRange(Samples other)
    {
        if (Count + other.Count > _data.Length)
        {
            Array.Resize(ref _data, Math.Max(_data.Length * 2, Count + other.Count));
        }
        Array.Copy(other._data, 0, _data, Count, other.Count);
        Count += other.Count;
    }

    public void Clear() => Count = 0;

    /// <summary>Nearest-rank percentiles in milliseconds (sorts in place).</summary>
    public double[] PercentilesMs(params double[] ps)
    {
        var span = _data.AsSpan(0, Count);
        span.Sort();
        var result = new double[ps.Length];
        for (var i = 0; i < ps.Length; i++)
        {
            if (Count == 0)
            {
                result[i] = double.NaN;
                continue;
            }
            var rank = (int)Math.Ceiling(ps[i] / 100.0 * Count) - 1;
            result[i] = span[Math.Clamp(rank, 0, Count - 1)] * 1000.0 / Stopwatch.Frequency;
        }
        return result;
    }

    public double MeanMs()
    {
        if (Count == 0)
        {
            return double.NaN;
        }
        double sum = 0;
        foreach (var v in _data.AsSpan(0, Count))
        {
            sum += v;
        }
        return sum / Count * 1000.0 / Stopwatch.Frequency;
    }
}

/// <summary>What one target did in one scenario, summed over its rounds.</summary>
internal sealed class TargetTotals
{
    public Samples Latencies { get; } = new();
    public long Requests { get; set; }
    public long Errors { get; set; }
    public double Seconds { get; set; }
    public TimeSpan GatewayCpu { get; set; }
    /// <summary>Of <see cref="GatewayCpu"/>, the usage ledger's commit threads'.</summary>
    public TimeSpan LedgerCpu { get; set; }
    public TimeSpan StandInCpu { get; set; }
    public TimeSpan HarnessCpu { get; set; }
    public TimeSpan MachineBusy { get; set; }

    /// <summary>CPU used by everything else on the machine (other users' builds, the kernel's softirq work is included above).</summary>
    public TimeSpan OtherCpu => MachineBusy - GatewayCpu - StandInCpu - HarnessCpu;

    public double Throughput => Seconds > 0 ? Requests / Seconds : 0;

    public void Add(TargetTotals other)
    {
        Latencies.AddRange(other.Latencies);
        Requests += other.Requests;
        Errors += other.Errors;
        Seconds += other.Seconds;
        GatewayCpu += other.GatewayCpu;
        LedgerCpu += other.LedgerCpu;
        StandInCpu += other.StandInCpu;
        HarnessCpu += other.HarnessCpu;
        MachineBusy += other.MachineBusy;
    }

    public static double MicrosPerRequest(TimeSpan cpu, long requests) => requests > 0 ? cpu.TotalMicroseconds / requests : double.NaN;
}

/// <summary>Closed-loop load: one thread per keep-alive connection, each sending its next request once the previous response is fully read.</summary>
internal static class Load
{
    /// <summary>Error descriptions and how often they happened (for the report).</summary>
    public static ConcurrentDictionary<string, long> ErrorKinds { get; } = new();

    private const int SampleEvery = 64;

    public sealed record RoundResult(long Requests, long Errors, double Seconds);

    /// <summary>Runs one round of <paramref name="duration"/> against <paramref name="target"/>; latencies go to <paramref name="into"/>.</summary>
    public static RoundResult Run(Target target, ChatMode mode, int connections, TimeSpan duration, Samples? into, CancellationToken cancellationToken)
    {
        var conns = target.Connections(connections);
        var request = target.Request(mode);
        var workers = new Worker[connections];
        using var gate = new ManualResetEventSlim(false);
        var threads = new Thread[connections];
        for (var i = 0; i < connections; i++)
        {
            var worker = workers[i] = new Worker(conns[i], request, mode, gate, target.Name, cancellationToken, target.Anthropic);
            threads[i] = new Thread(worker.Run) { IsBackground = true, Name = $"load-{target.Name}-{i}" };
            threads[i].Start();
        }

        var start = Stopwatch.GetTimestamp();
        var deadline = start + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        foreach (var w in workers)
        {
            w.Deadline = deadline;
        }
        gate.Set();
        foreach (var t in threads)
        {
            t.Join();
        }
        var end = workers.Max(w => w.Finished);

        long requests = 0, errors = 0;
        foreach (var w in workers)
        {
            requests += w.Latencies.Count;
            errors += w.Errors;
            into?.AddRange(w.Latencies);
        }
        target.TotalResponses += requests + errors;
        return new RoundResult(requests, errors, (end - start) / (double)Stopwatch.Frequency);
    }

    private sealed class Worker(RawHttpConnection connection, byte[] request, ChatMode mode, ManualResetEventSlim gate, string target, CancellationToken cancellationToken, bool anthropic = false)
    {
        private readonly bool _anthropic = anthropic;
        private readonly ArrayBufferWriter<byte> _body = new(4096);
        private int _sequence;

        public long Deadline { get; set; }
        public long Finished { get; private set; }
        public Samples Latencies { get; } = new();
        public long Errors { get; private set; }

        public void Run()
        {
            try
            {
                gate.Wait(cancellationToken);
            }
            catch (OperationCanceledException)
            {
                Finished = Stopwatch.GetTimestamp();
                return;
            }
            var deadline = Deadline;
            while (!cancellationToken.IsCancellationRequested)
            {
                var t0 = Stopwatch.GetTimestamp();
                if (t0 >= deadline)
                {
                    break;
                }
                var sample = _sequence++ % SampleEvery == 0;
                if (sample)
                {
                    _body.ResetWrittenCount();
                }
                int status;
                try
                {
                    status = connection.Exchange(request, sample ? _body : null);
                }
                catch (Exception ex) when (ex is IOException or InvalidDataException or System.Net.Sockets.SocketException or ObjectDisposedException)
                {
                    Fail($"{target}: {ex.GetType().Name}: {ex.Message}");
                    connection.Reset();
                    continue;
                }
                var t1 = Stopwatch.GetTimestamp();
                if (status != 200)
                {
                    Fail($"{target}: HTTP {status}");
                    continue;
                }
                if (sample && Verify.Body(mode, _body.WrittenSpan, _anthropic) is { } problem)
                {
                    Fail($"{target}: {problem}");
                    continue;
                }
                Latencies.Add(t1 - t0);
            }
            Finished = Stopwatch.GetTimestamp();
        }

        private void Fail(string what)
        {
            Errors++;
            ErrorKinds.AddOrUpdate(what, 1, (_, n) => n + 1);
        }
    }
}
