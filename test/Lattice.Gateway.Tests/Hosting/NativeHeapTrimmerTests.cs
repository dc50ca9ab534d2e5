using System.Globalization;
using System.Runtime.InteropServices;
using Lattice.Gateway.Hosting;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Lattice.Gateway.Tests.Hosting;

public sealed class NativeHeapTrimmerTests
{
    [Fact]
    public async Task A_pass_runs_once_per_interval_on_the_clock()
    {
        var clock = new FakeTimeProvider();
        using var passed = new SemaphoreSlim(0);
        var calls = 0;
        using var trimmer = new NativeHeapTrimmer(TimeSpan.FromSeconds(10), clock, NullLogger<NativeHeapTrimmer>.Instance, () =>
        {
            Interlocked.Increment(ref calls);
            passed.Release();
            return true;
        });
        await trimmer.StartAsync(CancellationToken.None);

        clock.Advance(TimeSpan.FromSeconds(9));
        Assert.Equal(0, Volatile.Read(ref calls));
        clock.Advance(TimeSpan.FromSeconds(1));
        await passed.WaitAsync();
        clock.Advance(TimeSpan.FromSeconds(10));
        await passed.WaitAsync();
        Assert.Equal(2, Volatile.Read(ref calls));

        await trimmer.StopAsync(CancellationToken.None);
        Assert.True(trimmer.ExecuteTask!.IsCompletedSuccessfully);
    }

    [Fact]
    public async Task An_interval_of_zero_turns_it_off()
    {
        var options = Options.Create(new GatewayOptions { NativeHeapTrimInterval = TimeSpan.Zero });
        using var trimmer = new NativeHeapTrimmer(options, new FakeTimeProvider(), NullLogger<NativeHeapTrimmer>.Instance);
        await trimmer.StartAsync(CancellationToken.None);
        Assert.False(trimmer.Enabled);
        await trimmer.ExecuteTask!;
    }

    [Fact]
    public void The_gateway_trims_every_10_seconds_unless_configured()
    {
        Assert.Equal(TimeSpan.FromSeconds(10), new GatewayOptions().NativeHeapTrimInterval);
    }

    /// <summary>
    /// The mechanism the soak found (docs/reliability.md): memory freed in the middle of a glibc heap stays resident until
    /// trimmed. 64 MiB in 64 KiB blocks (below malloc's mmap threshold, so inside the heap), all freed but the last, which
    /// keeps the heap's top from shrinking: resident until a pass, then given back.
    /// </summary>
    [Fact]
    public async Task On_linux_a_pass_gives_back_what_native_code_freed_inside_the_heap()
    {
        if (!OperatingSystem.IsLinux())
        {
            return; // glibc's malloc_trim: Linux only.
        }
        Assert.True(new NativeHeapTrimmer(Options.Create(new GatewayOptions()), new FakeTimeProvider(), NullLogger<NativeHeapTrimmer>.Instance).Enabled);
        var clock = new FakeTimeProvider();
        using var passed = new SemaphoreSlim(0);
        using var trimmer = new NativeHeapTrimmer(TimeSpan.FromSeconds(10), clock, NullLogger<NativeHeapTrimmer>.Instance, () =>
        {
            var released = NativeHeapTrimmer.MallocTrim();
            passed.Release();
            return released;
        });

        const int block = 64 << 10, count = 1024;
        var ones = new byte[block];
        Array.Fill(ones, (byte)1);
        // Other gateways in this test process run trimmers of their own on the real clock, and with glibc's arenas capped
        // (NativeHeapTrimmer's start-up) the blocks share an arena with busy threads, whose frees may trim part of it: an
        // attempt where less than a quarter of the blocks are still resident proves nothing and is made again. What was
        // resident must then go back.
        const long enough = 16L << 20;
        long before = 0, after = 0;
        for (var attempt = 0; attempt < 10 && before < enough; attempt++)
        {
            var blocks = new nint[count];
            // One thread, so every block comes from the same arena.
            var thread = new Thread(() =>
            {
                for (var i = 0; i < count; i++)
                {
                    blocks[i] = Marshal.AllocHGlobal(block);
                    Marshal.Copy(ones, 0, blocks[i], block);
                }
                for (var i = 0; i < count - 1; i++)
                {
                    Marshal.FreeHGlobal(blocks[i]);
                }
            });
            thread.Start();
            thread.Join();
            try
            {
                before = ResidentIn(blocks.AsSpan(0, count - 1), block);
                if (before < enough)
                {
                    continue;
                }
                await trimmer.StartAsync(CancellationToken.None);
                clock.Advance(TimeSpan.FromSeconds(10));
                await passed.WaitAsync();
                after = ResidentIn(blocks.AsSpan(0, count - 1), block);
                await trimmer.StopAsync(CancellationToken.None);
            }
            finally
            {
                Marshal.FreeHGlobal(blocks[^1]);
            }
        }
        Assert.True(before >= enough, $"the freed blocks were resident before the pass: {before >> 10} KiB");
        Assert.True(before - after >= before * 3 / 4, $"{(before - after) >> 10} KiB of the {before >> 10} KiB freed and resident went back ({after >> 10} KiB after)");
    }

    /// <summary>
    /// The resident bytes of the whole pages inside the freed blocks (each <paramref name="length"/> bytes), page by page
    /// (mincore): only memory the test freed counts, not the live data other threads keep in the same arena, which no
    /// trim can give back. A page no longer mapped at all (the heap shrunk) is not resident.
    /// </summary>
    private static long ResidentIn(ReadOnlySpan<nint> blocks, int length)
    {
        var page = Environment.SystemPageSize;
        long total = 0;
        var resident = new byte[1];
        foreach (var start in blocks)
        {
            var first = (start + page - 1) / page * page;
            var end = (start + length) / page * page;
            for (var at = first; at < end; at += page)
            {
                if (MinCore(at, (nuint)page, resident) == 0 && (resident[0] & 1) != 0)
                {
                    total += page;
                }
            }
        }
        return total;
    }

    [DllImport("libc", EntryPoint = "mincore", SetLastError = true)]
    private static extern int MinCore(nint address, nuint length, [Out] byte[] vector);
}
