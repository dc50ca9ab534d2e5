using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;

namespace Lattice.Bench;

/// <summary>
/// A server process the harness owns: started with <c>dotnet X.dll</c>, ready once a line on stdout matches,
/// killed (whole tree) on dispose, on Ctrl-C and at process exit.
/// </summary>
internal sealed class ChildProcess : IDisposable
{
    private static readonly ConcurrentDictionary<ChildProcess, byte> Live = new();
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _recent = new();
    private readonly TaskCompletionSource<string> _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Func<string, string?> _readyLine;
    private int _disposed;

    public string Name { get; }
    public int Id => _process.Id;

    private ChildProcess(string name, Process process, Func<string, string?> readyLine)
    {
        Name = name;
        _process = process;
        _readyLine = readyLine;
    }

    /// <summary>Starts <paramref name="dll"/> with the dotnet host; <paramref name="readyLine"/> returns non-null for the readiness line.</summary>
    public static ChildProcess Start(string name, string dll, IEnumerable<string> args, IReadOnlyDictionary<string, string?> env, Func<string, string?> readyLine) =>
        StartProgram(name, DotnetHost(), Path.GetDirectoryName(dll)!, [dll, .. args], env, readyLine);

    /// <summary>Starts <paramref name="program"/> in <paramref name="directory"/>; otherwise as <see cref="Start"/>.</summary>
    public static ChildProcess StartProgram(string name, string program, string directory, IEnumerable<string> args, IReadOnlyDictionary<string, string?> env,
        Func<string, string?> readyLine)
    {
        var info = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = directory,
        };
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }
        // Nothing from the harness's own launch (dotnet run, an ASP.NET environment) may leak into the servers.
        foreach (var key in new[] { "ASPNETCORE_URLS", "ASPNETCORE_HTTP_PORTS", "ASPNETCORE_HTTPS_PORTS", "DOTNET_URLS", "DOTNET_gcServer", "DOTNET_GCgen0size" })
        {
            info.Environment.Remove(key);
        }
        foreach (var (key, value) in env)
        {
            if (value is null)
            {
                info.Environment.Remove(key);
            }
            else
            {
                info.Environment[key] = value;
            }
        }

        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var child = new ChildProcess(name, process, readyLine);
        process.OutputDataReceived += (_, e) => child.OnLine(e.Data, stdout: true);
        process.ErrorDataReceived += (_, e) => child.OnLine(e.Data, stdout: false);
        process.Exited += (_, _) => child._ready.TrySetException(new BenchException(
            $"{name} exited (code {SafeExitCode(process)}) before it was ready. Its last output:\n{child.RecentOutput()}"));
        if (!process.Start())
        {
            throw new BenchException($"Could not start {name}.");
        }
        Live[child] = 0;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
    }

    public async Task<string> WaitReadyAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        try
        {
            return await _ready.Task.WaitAsync(timeout, cancellationToken);
        }
        catch (TimeoutException)
        {
            throw new BenchException($"{Name} was not ready within {timeout.TotalSeconds:0} s. Its last output:\n{RecentOutput()}");
        }
    }

    /// <summary>Resident set size (VmRSS) in bytes, from /proc/PID/status; -1 when unreadable.</summary>
    public long RssBytes
    {
        get
        {
            try
            {
                foreach (var line in File.ReadLines($"/proc/{Id}/status"))
                {
                    if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    {
                        var kb = line["VmRSS:".Length..].Trim().Split(' ')[0];
                        return long.Parse(kb, CultureInfo.InvariantCulture) * 1024;
                    }
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException)
            {
            }
            return -1;
        }
    }

    /// <summary>User + system CPU time consumed so far, from /proc/PID/stat.</summary>
    public TimeSpan CpuTime => ProcStat.CpuTime(Id);

    private int _ledgerThread;

    /// <summary>
    /// CPU time of the gateway's usage-ledger commit thread so far (named <c>Usage ledger commits</c>, which /proc
    /// cuts to 15 characters), from /proc/PID/task/TID/stat; zero while the thread does not exist.
    /// </summary>
    public TimeSpan LedgerThreadCpuTime
    {
        get
        {
            if (_ledgerThread == 0)
            {
                _ledgerThread = ProcStat.FindThread(Id, "Usage ledger co");
            }
            return _ledgerThread == 0 ? TimeSpan.Zero : ProcStat.CpuTime(Id, _ledgerThread);
        }
    }

    public bool HasExited => _process.HasExited;

    /// <summary>SIGKILL to this process alone (Process.Kill on Unix), as a crash or the OOM killer would end it.</summary>
    public void SigKill()
    {
        _process.Kill(entireProcessTree: false);
        _process.WaitForExit(10_000);
    }

    public string RecentOutput() => string.Join('\n', _recent);

    /// <summary>When set, every line the process writes is also appended here (the soak and fault modes keep them).</summary>
    public string? LogFile { get; set; }

    private void OnLine(string? line, bool stdout)
    {
        if (line is null)
        {
            return;
        }
        if (LogFile is { } log)
        {
            lock (_recent)
            {
                File.AppendAllText(log, $"{DateTime.Now:HH:mm:ss.fff} {(stdout ? "|" : "!")} {line}\n");
            }
        }
        _recent.Enqueue((stdout ? "  | " : "  ! ") + line);
        while (_recent.Count > 40 && _recent.TryDequeue(out _))
        {
        }
        if (!_ready.Task.IsCompleted && _readyLine(line) is { } value)
        {
            _ready.TrySetResult(value);
        }
    }

    /// <summary>SIGTERM, for a child that cleans up after itself (a script's trap); a kill after <paramref name="wait"/>.</summary>
    public void Stop(TimeSpan wait)
    {
        try
        {
            if (!_process.HasExited)
            {
                using (var term = Process.Start("kill", ["-TERM", Id.ToString(CultureInfo.InvariantCulture)]))
                {
                    term?.WaitForExit();
                }
                _process.WaitForExit(wait);
            }
        }
        catch (Exception ex) when (ex is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            // Already gone.
        }
        Dispose();
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        Live.TryRemove(this, out _);
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(10_000);
            }
        }
        catch (Exception ex) when (ex is InvalidOperationException or System.ComponentModel.Win32Exception or NotSupportedException)
        {
            // Already gone.
        }
        _process.Dispose();
    }

    /// <summary>Kills every child still running (Ctrl-C, SIGTERM, unhandled exception).</summary>
    public static void KillAll()
    {
        foreach (var child in Live.Keys)
        {
            child.Dispose();
        }
    }

    private static string SafeExitCode(Process p)
    {
        try
        {
            return p.ExitCode.ToString(CultureInfo.InvariantCulture);
        }
        catch (InvalidOperationException)
        {
            return "?";
        }
    }

    /// <summary>The dotnet host that runs this harness (…/dotnet), else whatever <c>dotnet</c> is on PATH.</summary>
    private static string DotnetHost()
    {
        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } hostPath && File.Exists(hostPath))
        {
            return hostPath;
        }
        if (Environment.ProcessPath is { } self && Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            return self;
        }
        var runtimeDir = System.Runtime.InteropServices.RuntimeEnvironment.GetRuntimeDirectory();
        var candidate = Path.GetFullPath(Path.Combine(runtimeDir, "..", "..", "..", "dotnet"));
        return File.Exists(candidate) ? candidate : "dotnet";
    }
}

/// <summary>Reads a process's CPU time from /proc/PID/stat (utime + stime, in clock ticks of 1/100 s).</summary>
internal static class ProcStat
{
    private const double TicksPerSecond = 100; // USER_HZ; 100 on every Linux this runs on.

    /// <summary>CPU time all CPUs spent busy (not idle, not iowait) so far, from /proc/stat.</summary>
    public static TimeSpan MachineBusy()
    {
        try
        {
            var line = File.ReadLines("/proc/stat").First();
            // cpu  user nice system idle iowait irq softirq steal guest guest_nice
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            long busy = 0;
            for (var i = 1; i < f.Length && i <= 8; i++)
            {
                if (i is 4 or 5)
                {
                    continue;
                }
                busy += long.Parse(f[i], CultureInfo.InvariantCulture);
            }
            return TimeSpan.FromSeconds(busy / TicksPerSecond);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException or InvalidOperationException)
        {
            return TimeSpan.Zero;
        }
    }

    /// <summary>The id of <paramref name="pid"/>'s first thread whose name is <paramref name="comm"/>; 0 when none.</summary>
    public static int FindThread(int pid, string comm)
    {
        try
        {
            foreach (var task in Directory.EnumerateDirectories($"/proc/{pid}/task"))
            {
                if (File.ReadAllText(Path.Combine(task, "comm")).TrimEnd('\n') == comm)
                {
                    return int.Parse(Path.GetFileName(task), CultureInfo.InvariantCulture);
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException)
        {
        }
        return 0;
    }

    /// <summary>A process's CPU time, or with <paramref name="tid"/> one of its threads'.</summary>
    public static TimeSpan CpuTime(int pid, int tid = 0)
    {
        try
        {
            var stat = File.ReadAllText(tid == 0 ? $"/proc/{pid}/stat" : $"/proc/{pid}/task/{tid}/stat");
            // Field 2 (comm) is parenthesised and may contain spaces: split after the last ')'.
            var rest = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            // rest[0] is field 3 (state); utime is field 14, stime field 15.
            var utime = long.Parse(rest[11], CultureInfo.InvariantCulture);
            var stime = long.Parse(rest[12], CultureInfo.InvariantCulture);
            return TimeSpan.FromSeconds((utime + stime) / TicksPerSecond);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException or ArgumentOutOfRangeException)
        {
            return TimeSpan.Zero;
        }
    }
}
