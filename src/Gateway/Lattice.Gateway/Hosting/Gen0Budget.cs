using System.Collections;
using System.Runtime.InteropServices;
using System.Text;

namespace Lattice.Gateway.Hosting;

/// <summary>
/// Fixes the GC's generation-0 budget at <see cref="Bytes"/> for a gateway process. Left to itself, the workstation GC
/// sizes gen-0 from the cache size and retunes it after each collection; under a steady load the budget, and with it the
/// memory the GC keeps committed, drifts up and down by megabytes, which the 30-minute soak reads as growth
/// (docs/reliability.md: +1.5 MB of committed GC memory in 10 minutes with the heap after each collection flat). With a
/// fixed 32 MiB budget the soak's resident floor held at +0.10 MB / 10 min, and the gateway collects about half as often.
/// <para>
/// The runtime reads this knob only from the environment (<c>DOTNET_GCgen0size</c>): it has no runtimeconfig.json
/// property, and it is read once, when the GC starts, before any managed code runs. So a gateway started without it
/// replaces itself, first thing, with the same program, arguments and environment plus the variable (<c>execve</c> of
/// <c>/proc/self/exe</c>: same process id, same open standard streams, nothing started yet). A variable already set — to
/// any value, <c>0</c> meaning the runtime's own sizing — is left alone, so an operator keeps the last word. Linux only.
/// </para>
/// </summary>
public static partial class Gen0Budget
{
    /// <summary>The environment variable the runtime reads the budget from (hexadecimal bytes).</summary>
    public const string Variable = "DOTNET_GCgen0size";

    /// <summary>32 MiB.</summary>
    public const long Bytes = 32L << 20;

    /// <summary>The variable's value as the runtime expects it.</summary>
    public static string Value => "0x" + Bytes.ToString("X", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// Call first in <c>Main</c>, before anything starts: unless the budget is already configured, re-executes this
    /// process with it set (and does not return). Returns when there is nothing to do or the re-execution is impossible
    /// (not Linux, <c>/proc</c> unreadable), in which case the gateway runs with the runtime's own sizing.
    /// </summary>
    public static void EnsureConfigured()
    {
        if (!OperatingSystem.IsLinux() || IsConfigured(Environment.GetEnvironmentVariables()))
        {
            return;
        }
        string[] argv;
        try
        {
            argv = ParseCommandLine(File.ReadAllBytes("/proc/self/cmdline"));
        }
        catch (IOException)
        {
            return;
        }
        catch (UnauthorizedAccessException)
        {
            return;
        }
        if (argv.Length == 0)
        {
            return;
        }
        var envp = Environment.GetEnvironmentVariables().Cast<DictionaryEntry>()
            .Select(e => $"{e.Key}={e.Value}")
            .Append($"{Variable}={Value}")
            .ToArray();
        System.Console.Out.Flush();
        System.Console.Error.Flush();
        RemoveDiagnosticsSocket();
        // Returns only on failure (the binary is gone, a seccomp filter refuses): carry on with the runtime's sizing.
        _ = Execve("/proc/self/exe", [.. argv, null], [.. envp, null]);
    }

    /// <summary>
    /// The runtime's diagnostics endpoint (what <c>dotnet-dump</c>, <c>dotnet-counters</c> and <c>createdump</c> requests
    /// connect to) is a Unix socket named after the process id and start time, both of which the re-executed program
    /// keeps: the file this first image bound must go, or the next one cannot bind it and runs without diagnostics.
    /// </summary>
    private static void RemoveDiagnosticsSocket()
    {
        var directory = Path.GetTempPath(); // TMPDIR, else /tmp: where the runtime puts the socket
        try
        {
            foreach (var socket in Directory.EnumerateFiles(directory, $"dotnet-diagnostic-{Environment.ProcessId}-*-socket"))
            {
                File.Delete(socket);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    /// <summary>True when the environment already sets the budget (either prefix the runtime reads).</summary>
    internal static bool IsConfigured(IDictionary environment) =>
        environment.Contains(Variable) || environment.Contains("COMPlus_GCgen0size");

    /// <summary>The NUL-separated arguments of <c>/proc/self/cmdline</c>.</summary>
    internal static string[] ParseCommandLine(ReadOnlySpan<byte> cmdline)
    {
        if (cmdline.Length > 0 && cmdline[^1] == 0)
        {
            cmdline = cmdline[..^1];
        }
        if (cmdline.IsEmpty)
        {
            return [];
        }
        var args = new List<string>();
        foreach (var range in cmdline.Split((byte)0))
        {
            args.Add(Encoding.UTF8.GetString(cmdline[range]));
        }
        return [.. args];
    }

    [LibraryImport("libc", EntryPoint = "execve", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Execve(string path, string?[] argv, string?[] envp);
}
