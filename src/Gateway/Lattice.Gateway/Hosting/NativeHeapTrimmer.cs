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
            LimitArenas(logger);
        }
    }

    /// <summary>At most this many malloc arenas (glibc's default is 8 per core).</summary>
    internal const int ArenaLimit = 2;

    /// <summary>
    /// Caps the number of malloc arenas at <see cref="ArenaLimit"/> (<c>mallopt(M_ARENA_MAX)</c>), unless
    /// <c>MALLOC_ARENA_MAX</c> is set in the environment. Trimming returns only whole free pages; what stays is each
    /// arena's fragmentation, and the thread pool's threads spread over up to 16 arenas on two cores, so the total
    /// crept up in the soak even with trimming. glibc fixes the limit when it first needs a ninth arena, so this must run
    /// at start-up, before the load (arenas made before it stay; none beyond the limit is made after). Native allocation
    /// in the gateway is light (the JIT, SQLite, OpenSSL), so the arenas' locks are not contended.
    /// </summary>
    private static void LimitArenas(ILogger logger)
    {
        if (Environment.GetEnvironmentVariable("MALLOC_ARENA_MAX") is not null)
        {
            return;
        }
        try
        {
            NativeMallopt(MArenaMax, ArenaLimit);
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            LogUnavailable(logger, e.Message);
        }
    }

    // glibc's malloc.h: #define M_ARENA_MAX -8
    private const int MArenaMax = -8;

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
