using System.Globalization;

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
        while (true)
        {
            var info = GC.GetGCMemoryInfo();
            // heap_after_last_gc committed gen2_collections total_allocated
            var line = string.Create(CultureInfo.InvariantCulture,
                $"{info.HeapSizeBytes} {info.TotalCommittedBytes} {GC.CollectionCount(2)} {GC.GetTotalAllocatedBytes()}\n");
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

    /// <summary>Reads the file the hook writes: (heap size after the last GC, committed bytes), or null when not there yet.</summary>
    public static (long HeapBytes, long CommittedBytes)? Read(string path)
    {
        try
        {
            var f = File.ReadAllText(path).Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return (long.Parse(f[0], CultureInfo.InvariantCulture), long.Parse(f[1], CultureInfo.InvariantCulture));
        }
        catch (Exception ex) when (ex is IOException or FormatException or IndexOutOfRangeException)
        {
            return null;
        }
    }
}
