using System.Runtime.InteropServices;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Hosting;

/// <summary>
/// Gives the C allocator's free pages back to the kernel every <see cref="GatewayOptions.NativeHeapTrimInterval"/>
/// (glibc's <c>malloc_trim(0)</c>; Linux with glibc only). Native code in the gateway — the JIT above all, then SQLite
/// and OpenSSL — allocates and frees through glibc's malloc from many threads, each thread on one of up to 8 arenas per
/// core. A freed chunk inside an arena's heap stays resident until the chunks around it are freed too and the heap's
/// top is trimmed, so the arenas' resident size climbs to the sum of every arena's own peak and stays there: in the
/// 30-minute soak, VmRSS grew about 5 MB every 10 minutes with the bytes malloc had in use flat and only its free,
/// kept bytes rising (docs/reliability.md). <c>malloc_trim(0)</c> walks every arena and returns each whole free page
/// (<c>MADV_DONTNEED</c>); nothing in use moves, and a later allocation gets fresh zero pages.
/// </summary>
public sealed partial class NativeHeapTrimmer : BackgroundService
{
    private readonly TimeSpan _interval;
    private readonly TimeProvider _time;
    private readonly ILogger<NativeHeapTrimmer> _logger;
    private readonly Func<bool> _trim;
    private long _passes;
    private PeriodicTimer? _timer;

    public NativeHeapTrimmer(IOptions<GatewayOptions> options, TimeProvider time, ILogger<NativeHeapTrimmer> logger)
        : this(options.Value.NativeHeapTrimInterval, time, logger, OperatingSystem.IsLinux() ? MallocTrim : null)
    {
        if (Enabled)
        {
            TuneAllocator(logger);
        }
    }

    /// <summary>At most this many malloc arenas (glibc's default is 8 per core).</summary>
    internal const int ArenaLimit = 1;

    /// <summary>Blocks at least this big are mapped on their own and unmapped when freed (glibc's starting value, kept fixed).</summary>
    internal const int MmapThreshold = 128 * 1024;

    /// <summary>
    /// Sets glibc's malloc up for a long-running server, at start-up before the load: one arena
    /// (<c>mallopt(M_ARENA_MAX, 1)</c>, unless <c>MALLOC_ARENA_MAX</c> is set in the environment, which wins) and a fixed
    /// mmap threshold (<c>mallopt(M_MMAP_THRESHOLD, 128 KiB)</c>, unless <c>MALLOC_MMAP_THRESHOLD_</c> is set).
    /// Trimming returns only whole free pages; what stays is fragmentation inside each arena. With 16 arenas (8 per core)
    /// the soak's resident C heap crept up 3.6 MB / 10 min even with trimming; with two, about 1 MB / 10 min on a quiet
    /// machine (docs/reliability.md). One arena leaves a single heap to fragment and to trim. glibc also raises its mmap
    /// threshold each time a mapped block is freed (up to 32 MiB), after which big, short-lived blocks — SQLite's
    /// statement and page buffers, the JIT's — are carved out of the heap and leave holes; a threshold set by hand turns
    /// that off, so such a block goes back to the kernel when it is freed. Native allocation in the gateway is light (the
    /// JIT, SQLite, OpenSSL; requests allocate managed memory), so one arena's lock is not contended.
    /// </summary>
    private static void TuneAllocator(ILogger logger)
    {
        try
        {
            if (Environment.GetEnvironmentVariable("MALLOC_ARENA_MAX") is null)
            {
                NativeMallopt(MArenaMax, ArenaLimit);
            }
            if (Environment.GetEnvironmentVariable("MALLOC_MMAP_THRESHOLD_") is null)
            {
                NativeMallopt(MMmapThreshold, MmapThreshold);
            }
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            LogUnavailable(logger, e.Message);
        }
    }

    // glibc's malloc.h: #define M_ARENA_MAX -8, #define M_MMAP_THRESHOLD -3
    private const int MArenaMax = -8;
    private const int MMmapThreshold = -3;

    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int NativeMallopt(int param, int value);

    /// <param name="trim">One pass (true when pages went back), or null where there is nothing to trim.</param>
    internal NativeHeapTrimmer(TimeSpan interval, TimeProvider time, ILogger<NativeHeapTrimmer> logger, Func<bool>? trim)
    {
        _interval = interval;
        _time = time;
        _logger = logger;
        _trim = trim ?? (() => false);
        Enabled = trim is not null && interval > TimeSpan.Zero;
    }

    /// <summary>False when turned off (interval zero) or not on Linux.</summary>
    public bool Enabled { get; private set; }

    /// <summary>How many passes have run.</summary>
    public long Passes => Interlocked.Read(ref _passes);

    /// <summary>The clock starts here, not when <see cref="ExecuteAsync"/> gets a thread: the first pass is one interval after start-up.</summary>
    public override Task StartAsync(CancellationToken cancellationToken)
    {
        _timer = Enabled ? new PeriodicTimer(_interval, _time) : null;
        return base.StartAsync(cancellationToken);
    }

    public override void Dispose()
    {
        _timer?.Dispose();
        base.Dispose();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (_timer is not { } timer)
        {
            return;
        }
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                // Off the timer's thread: a clock moved on by many intervals at once (a test's fake clock advanced a
                // day, a VM resumed) then gives one pass, as the timer folds ticks nobody waited for, not one per interval
                // run inline in the clock's own call (a day of 10-s passes hung a test for half an hour in CI).
                await Task.Yield();
                _trim();
                Interlocked.Increment(ref _passes);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            // Not glibc (musl has no malloc_trim): its allocator is not the one this is for.
            Enabled = false;
            LogUnavailable(_logger, e.Message);
        }
    }

    /// <summary>One <c>malloc_trim(0)</c>: true when pages went back.</summary>
    internal static bool MallocTrim() => NativeMallocTrim(0) == 1;

    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int NativeMallocTrim(nuint pad);

    [LoggerMessage(EventId = 9401, Level = LogLevel.Debug, Message = "No malloc_trim in this C library ({Error}): the native heap is not trimmed")]
    private static partial void LogUnavailable(ILogger logger, string error);
}
