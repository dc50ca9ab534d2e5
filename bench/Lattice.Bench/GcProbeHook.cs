using System.Globalization;
using System.Runtime.InteropServices;

#pragma warning disable CA1050 // The runtime looks the hook up by this exact name, outside any namespace.

/// <summary>
/// The soak mode's window on the gateway's managed heap, with no change to the gateway: the harness starts the gateway
/// with <c>DOTNET_STARTUP_HOOKS=&lt;this assembly&gt;</c> and <c>LATTICE_BENCH_GC_FILE=&lt;path&gt;</c>, and the runtime
/// calls <see cref="Initialize"/> inside the gateway before its <c>Main</c>. A background thread then rewrites that file
/// once a second with <see cref="GC.GetGCMemoryInfo()"/>'s figures, which the harness reads when it samples VmRSS.
/// Only the types used here are loaded into the gateway; nothing else of the harness runs there.
/// </summary>
public static class StartupHook
{
    public const string FileVariable = "LATTICE_BENCH_GC_FILE";
    /// <summary>Diagnosis only: when set to a number of seconds, the probe calls glibc's <c>malloc_trim(0)</c> that often (free pages inside the C allocator's heaps go back to the kernel).</summary>
    public const string TrimVariable = "LATTICE_BENCH_MALLOC_TRIM_SECONDS";

    public static void Initialize()
    {
        var path = Environment.GetEnvironmentVariable(FileVariable);
        if (string.IsNullOrEmpty(path))
        {
            return;
        }
        var thread = new Thread(() => Run(path)) { IsBackground = true, Name = "bench-gc-probe" };
        thread.Start();
    }

    private static void Run(string path)
    {
        var temp = path + ".tmp";
        var trimEvery = int.TryParse(Environment.GetEnvironmentVariable(TrimVariable), NumberStyles.None, CultureInfo.InvariantCulture, out var t) && t > 0 ? t : 0;
        var glibc = true;
        for (var second = 1; ; second++)
        {
            var info = GC.GetGCMemoryInfo();
            long inUse = -1, free = -1;
            if (glibc)
            {
                try
                {
                    if (trimEvery > 0 && second % trimEvery == 0)
                    {
                        _ = MallocTrim(0);
                    }
                    var m = MallInfo2();
                    (inUse, free) = ((long)m.Uordblks + (long)m.Hblkhd, (long)m.Fordblks);
                }
                catch (Exception ex) when (ex is EntryPointNotFoundException or DllNotFoundException)
                {
                    glibc = false; // Not glibc (musl): no figures.
                }
            }
            // heap_after_last_gc committed gen2_collections total_allocated malloc_in_use malloc_free jitted_methods
            var line = string.Create(CultureInfo.InvariantCulture,
                $"{info.HeapSizeBytes} {info.TotalCommittedBytes} {GC.CollectionCount(2)} {GC.GetTotalAllocatedBytes()} {inUse} {free} {System.Runtime.JitInfo.GetCompiledMethodCount()}\n");
            try
            {
                File.WriteAllText(temp, line);
                File.Move(temp, path, overwrite: true);
            }
            catch (IOException)
            {
                // A full disk (the fault mode fills the data directory, not this file's) or a removed directory: try again.
            }
            Thread.Sleep(1000);
        }
    }

    /// <summary>glibc's <c>struct mallinfo2</c>: totals over every arena, in bytes.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct MallInfo
    {
        public nuint Arena, Ordblks, Smblks, Hblks, Hblkhd, Usmblks, Fsmblks, Uordblks, Fordblks, Keepcost;
    }

    [DllImport("libc", EntryPoint = "mallinfo2")]
    private static extern MallInfo MallInfo2();

    [DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);

    /// <summary>
    /// Reads the file the hook writes: the heap size after the last GC, the GC's committed bytes, and the C allocator's
    /// bytes in use (allocated and not freed, in every arena and in its own mappings) and free (kept in its arenas), -1
    /// when not glibc, and the number of methods the JIT has compiled so far (every tier); or null when the file is not
    /// there yet.
    /// </summary>
    public static (long HeapBytes, long CommittedBytes, long MallocInUse, long MallocFree, long Jitted)? Read(string path)
    {
        try
        {
            var f = File.ReadAllText(path).Split(' ', StringSplitOptions.RemoveEmptyEntries);
            long At(int i) => i < f.Length ? long.Parse(f[i], CultureInfo.InvariantCulture) : -1;
            return (At(0), At(1), At(4), At(5), At(6));
        }
        catch (Exception ex) when (ex is IOException or FormatException or IndexOutOfRangeException)
        {
            return null;
        }
    }
}
