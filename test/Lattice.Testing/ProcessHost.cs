using System.ComponentModel;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using System.Text;

namespace Lattice.Testing;

/// <summary>
/// A real child process for end-to-end tests. Captures stdout and stderr line by line, reports readiness
/// when a stdout line matches a predicate, and on disposal kills the whole process tree and waits for it.
/// </summary>
public sealed class ProcessHost : IAsyncDisposable
{
    /// <summary>Prefix of stderr lines in <see cref="Output"/>.</summary>
    public const string StdErrPrefix = "[stderr] ";

    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan KillWaitTimeout = TimeSpan.FromSeconds(30);

    private readonly Process _process;
    private readonly Lock _lock = new();
    private readonly StringBuilder _output = new();
    private readonly List<string> _lines = [];
    private readonly List<Waiter> _waiters = [];
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _disposed;
    private int? _exitCode;

    private ProcessHost(Process process, string description)
    {
        _process = process;
        Description = description;
        process.OutputDataReceived += (_, e) => OnLine(e.Data, isError: false);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data, isError: true);
        process.Exited += (_, _) => _exited.TrySetResult();
    }

    /// <summary>The command line, for messages.</summary>
    public string Description { get; }

    /// <summary>The child's process id.</summary>
    public int ProcessId { get; private set; }

    /// <summary>Everything captured so far, one line per line; stderr lines start with <see cref="StdErrPrefix"/>.</summary>
    public string Output
    {
        get
        {
            lock (_lock)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>Whether the child process has exited.</summary>
    public bool HasExited => _exited.Task.IsCompleted;

    /// <summary>The exit code once the process has exited (after a kill, the kill's exit code).</summary>
    public int? ExitCode
    {
        get
        {
            if (_exitCode is null && HasExited && Volatile.Read(ref _disposed) == 0)
            {
                try
                {
                    _exitCode = _process.ExitCode;
                }
                catch (InvalidOperationException)
                {
                }
            }

            return _exitCode;
        }
    }

    /// <summary>
    /// The <c>dotnet</c> host to run framework-dependent dlls with: <c>$DOTNET_HOST_PATH</c> (set by the
    /// dotnet CLI for the processes it starts), else the current process if it is <c>dotnet</c>, else
    /// <c>dotnet</c> from PATH.
    /// </summary>
    public static string DotnetHost
    {
        get
        {
            var hostPath = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
            if (!string.IsNullOrEmpty(hostPath) && File.Exists(hostPath))
            {
                return hostPath;
            }

            var processPath = Environment.ProcessPath;
            if (processPath is not null
                && string.Equals(Path.GetFileNameWithoutExtension(processPath), "dotnet", StringComparison.OrdinalIgnoreCase))
            {
                return processPath;
            }

            return "dotnet";
        }
    }

    /// <summary>
    /// Starts <paramref name="fileName"/> and completes once a stdout line satisfies <paramref name="readyLine"/>.
    /// </summary>
    /// <param name="fileName">The executable (resolved through PATH when not a path).</param>
    /// <param name="args">Arguments, passed verbatim (no shell quoting needed).</param>
    /// <param name="env">Environment overrides on top of the current environment; a null value removes the variable.</param>
    /// <param name="readyLine">Predicate over stdout lines signalling readiness.</param>
    /// <param name="timeout">How long to wait for readiness.</param>
    /// <param name="cancellationToken">Cancels the wait (the process is then killed).</param>
    /// <exception cref="ProcessHostException">The process exited before becoming ready.</exception>
    /// <exception cref="TimeoutException">Readiness did not come within <paramref name="timeout"/>.</exception>
    /// <remarks>On any failure the process tree is killed and the exception message contains the captured output.</remarks>
    public static async Task<ProcessHost> StartAsync(
        string fileName,
        IEnumerable<string> args,
        IDictionary<string, string?>? env,
        Func<string, bool> readyLine,
        TimeSpan timeout,
        CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(fileName);
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(readyLine);

        var startInfo = new ProcessStartInfo(fileName)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            CreateNoWindow = true,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        foreach (var arg in args)
        {
            startInfo.ArgumentList.Add(arg);
        }

        if (env is not null)
        {
            foreach (var (key, value) in env)
            {
                if (value is null)
                {
                    startInfo.Environment.Remove(key);
                }
                else
                {
                    startInfo.Environment[key] = value;
                }
            }
        }

        var description = string.Join(' ', new[] { fileName }.Concat(startInfo.ArgumentList.Select(Quote)));
        var process = new Process { StartInfo = startInfo, EnableRaisingEvents = true };
        var host = new ProcessHost(process, description);
        var ready = host.AddWaiter(readyLine, includeStdErr: false);

        try
        {
            if (!process.Start())
            {
                throw new ProcessHostException($"Could not start '{description}'.", host.Output);
            }
        }
        catch (Win32Exception ex)
        {
            process.Dispose();
            throw new ProcessHostException($"Could not start '{description}': {ex.Message}", string.Empty, ex);
        }

        host.ProcessId = process.Id;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        try
        {
            await host.WaitAsync(ready, timeout, "to print its ready line", cancellationToken).ConfigureAwait(false);
            return host;
        }
        catch
        {
            await host.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Runs a built project's dll (<see cref="DotnetDll"/>) with <see cref="DotnetHost"/>; otherwise as <see cref="StartAsync"/>.
    /// </summary>
    public static Task<ProcessHost> StartDotnetAsync(
        string projectName,
        IEnumerable<string> args,
        IDictionary<string, string?>? env,
        Func<string, bool> readyLine,
        TimeSpan timeout,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(args);
        return StartAsync(DotnetHost, args.Prepend(DotnetDll(projectName)), env, readyLine, timeout, cancellationToken);
    }

    /// <summary>
    /// Waits for an output line (stdout or stderr, without the stderr prefix) satisfying <paramref name="match"/>,
    /// including lines already captured. Returns the line.
    /// </summary>
    /// <exception cref="ProcessHostException">The process exited first.</exception>
    /// <exception cref="TimeoutException">No such line within <paramref name="timeout"/>.</exception>
    public async Task<string> WaitForOutputAsync(Func<string, bool> match, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(match);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        Waiter waiter;
        lock (_lock)
        {
            foreach (var line in _lines)
            {
                if (match(line))
                {
                    return line;
                }
            }

            waiter = new Waiter(match, includeStdErr: true);
            _waiters.Add(waiter);
        }

        return await WaitAsync(waiter, timeout, "to print the expected line", cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Waits for the process to exit on its own and for all of its output to be captured; returns the exit code.
    /// </summary>
    /// <exception cref="TimeoutException">The process was still running after <paramref name="timeout"/>.</exception>
    public async Task<int> WaitForExitAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        try
        {
            await _process.WaitForExitAsync(cancellationToken).WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException ex)
        {
            throw new TimeoutException($"'{Description}' (pid {ProcessId}) did not exit within {timeout}. Output so far:\n{Output}", ex);
        }
        return _process.ExitCode;
    }

    /// <summary>
    /// Path of a built project's dll: <c>&lt;repo&gt;/{src|test|bench|samples}/**/&lt;projectName&gt;/bin/&lt;Configuration&gt;/&lt;tfm&gt;/&lt;projectName&gt;.dll</c>,
    /// with the configuration (Debug/Release) and target framework taken from the running test assembly's
    /// output path (<c>…/bin/&lt;Configuration&gt;/&lt;tfm&gt;/</c>; net10.0 and the library's own configuration if it has no such shape).
    /// </summary>
    /// <exception cref="FileNotFoundException">The project has not been built in that configuration.</exception>
    public static string DotnetDll(string projectName, string? assemblyName = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(projectName);
        var dllName = (assemblyName ?? projectName) + ".dll";
        var (configuration, targetFramework) = CurrentBuildLayout();
        var root = RepoPaths.RepoRoot;
        var found = new List<string>();
        var projectDirs = new List<string>();
        foreach (var top in new[] { "src", "test", "bench", "samples" })
        {
            var topDir = Path.Combine(root, top);
            if (!Directory.Exists(topDir))
            {
                continue;
            }

            foreach (var projectDir in FindDirectories(topDir, projectName))
            {
                projectDirs.Add(projectDir);
                var dll = Path.Combine(projectDir, "bin", configuration, targetFramework, dllName);
                if (File.Exists(dll))
                {
                    found.Add(dll);
                }
            }
        }

        return found.Count switch
        {
            1 => found[0],
            0 => throw new FileNotFoundException(projectDirs.Count == 0
                ? $"No project directory named '{projectName}' under {root}/{{src,test,bench,samples}}."
                : $"'{projectName}' is not built for {configuration}/{targetFramework}: looked for "
                  + string.Join(", ", projectDirs.Select(d => Path.Combine(d, "bin", configuration, targetFramework, dllName)))
                  + $". Build it first (dotnet build -c {configuration})."),
            _ => throw new InvalidOperationException($"'{projectName}' is ambiguous: {string.Join(", ", found)}."),
        };
    }

    /// <summary>
    /// A TCP port that was free on 127.0.0.1 a moment ago, for a process the test starts to bind. Drawn at random below the
    /// kernel's ephemeral range (<c>ip_local_port_range</c>), as deploy/local-cluster.sh does: a port the kernel handed
    /// out (bind to port 0) could be taken by another test's outgoing connection before the process binds it, which
    /// ports below the range never are.
    /// </summary>
    public static int FreeTcpPort()
    {
        const int floor = 10000;
        var ceiling = EphemeralRangeStart();
        for (var attempt = 0; ceiling - floor >= 1000 && attempt < 100; attempt++)
        {
            var port = Random.Shared.Next(floor, ceiling);
            var probe = new TcpListener(IPAddress.Loopback, port);
            try
            {
                probe.Start();
                return port;
            }
            catch (SocketException)
            {
                // Taken: another draw.
            }
            finally
            {
                probe.Stop();
            }
        }
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        try
        {
            return ((IPEndPoint)listener.LocalEndpoint).Port;
        }
        finally
        {
            listener.Stop();
        }
    }

    /// <summary>The first port of the kernel's ephemeral range (32768 when it cannot be read).</summary>
    private static int EphemeralRangeStart()
    {
        try
        {
            var range = File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            return int.Parse(range[0], System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return 32768;
        }
    }

    /// <summary>Kills the whole process tree (if still running), waits for it to exit and releases it. Idempotent.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }
        }
        catch (InvalidOperationException)
        {
            // Never started or already gone.
        }
        catch (Win32Exception)
        {
            // Raced with the process exiting.
        }

        try
        {
            await _process.WaitForExitAsync().WaitAsync(KillWaitTimeout).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // Output pipes held open by something outside the tree; nothing more to do.
        }
        catch (InvalidOperationException)
        {
            // Never started.
        }

        try
        {
            _exitCode ??= _process.HasExited ? _process.ExitCode : null;
        }
        catch (InvalidOperationException)
        {
        }

        _exited.TrySetResult();
        FailWaiters(() => new ObjectDisposedException(nameof(ProcessHost)));
        _process.Dispose();
    }

    private static (string Configuration, string TargetFramework) CurrentBuildLayout()
    {
        var segments = AppContext.BaseDirectory.Split(
            [Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar], StringSplitOptions.RemoveEmptyEntries);
        for (var i = segments.Length - 3; i >= 0; i--)
        {
            if (segments[i] == "bin" && segments[i + 2].StartsWith("net", StringComparison.Ordinal))
            {
                return (segments[i + 1], segments[i + 2]);
            }
        }

        var configuration = typeof(ProcessHost).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration;
        return (string.IsNullOrEmpty(configuration) ? "Debug" : configuration, "net10.0");
    }

    private static IEnumerable<string> FindDirectories(string root, string name)
    {
        var pending = new Stack<string>();
        pending.Push(root);
        while (pending.Count > 0)
        {
            var dir = pending.Pop();
            IEnumerable<string> children;
            try
            {
                children = Directory.EnumerateDirectories(dir);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                continue;
            }

            foreach (var child in children)
            {
                var childName = Path.GetFileName(child);
                if (childName is "bin" or "obj" or "node_modules" || childName.StartsWith('.'))
                {
                    continue;
                }

                if (string.Equals(childName, name, StringComparison.Ordinal))
                {
                    yield return child;
                }

                pending.Push(child);
            }
        }
    }

    private static string Quote(string arg) =>
        arg.Length > 0 && !arg.Any(c => char.IsWhiteSpace(c) || c is '"' or '\'') ? arg : "'" + arg.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    private Waiter AddWaiter(Func<string, bool> predicate, bool includeStdErr)
    {
        var waiter = new Waiter(predicate, includeStdErr);
        lock (_lock)
        {
            _waiters.Add(waiter);
        }

        return waiter;
    }

    private async Task<string> WaitAsync(Waiter waiter, TimeSpan timeout, string what, CancellationToken cancellationToken)
    {
        using var timeoutCts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeoutCts.CancelAfter(timeout);
        var cancelled = Task.Delay(Timeout.InfiniteTimeSpan, timeoutCts.Token);
        try
        {
            var first = await Task.WhenAny(waiter.Completion.Task, _exited.Task, cancelled).ConfigureAwait(false);
            if (first == waiter.Completion.Task || waiter.Completion.Task.IsCompleted)
            {
                return await waiter.Completion.Task.ConfigureAwait(false);
            }

            if (first == _exited.Task)
            {
                // Let the remaining output arrive before reporting it.
                try
                {
                    await _process.WaitForExitAsync(CancellationToken.None).WaitAsync(DrainTimeout).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is TimeoutException or InvalidOperationException)
                {
                }

                if (waiter.Completion.Task.IsCompleted)
                {
                    return await waiter.Completion.Task.ConfigureAwait(false);
                }

                throw new ProcessHostException(
                    $"'{Description}' (pid {ProcessId}) exited with code {ExitCode?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "?"} before it was expected {what}.",
                    Output);
            }

            cancellationToken.ThrowIfCancellationRequested();
            throw new TimeoutException(
                $"'{Description}' (pid {ProcessId}) was expected {what} within {timeout.TotalSeconds:0.###} s." + FormatOutput(Output));
        }
        finally
        {
            lock (_lock)
            {
                _waiters.Remove(waiter);
            }

            await timeoutCts.CancelAsync().ConfigureAwait(false);
        }
    }

    private void OnLine(string? line, bool isError)
    {
        if (line is null)
        {
            return;
        }

        List<(Waiter Waiter, Exception? Error)>? completed = null;
        lock (_lock)
        {
            _lines.Add(line);
            if (isError)
            {
                _output.Append(StdErrPrefix);
            }

            _output.Append(line).Append('\n');
            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                var waiter = _waiters[i];
                if (isError && !waiter.IncludeStdErr)
                {
                    continue;
                }

                Exception? error = null;
                bool matched;
                try
                {
                    matched = waiter.Predicate(line);
                }
                catch (Exception ex)
                {
                    matched = true;
                    error = ex;
                }

                if (matched)
                {
                    _waiters.RemoveAt(i);
                    (completed ??= []).Add((waiter, error));
                }
            }
        }

        if (completed is null)
        {
            return;
        }

        foreach (var (waiter, error) in completed)
        {
            if (error is null)
            {
                waiter.Completion.TrySetResult(line);
            }
            else
            {
                waiter.Completion.TrySetException(error);
            }
        }
    }

    private void FailWaiters(Func<Exception> error)
    {
        Waiter[] pending;
        lock (_lock)
        {
            pending = [.. _waiters];
            _waiters.Clear();
        }

        foreach (var waiter in pending)
        {
            waiter.Completion.TrySetException(error());
        }
    }

    internal static string FormatOutput(string output) =>
        output.Length == 0
            ? Environment.NewLine + "(no output captured)"
            : Environment.NewLine + "Captured output:" + Environment.NewLine + output;

    private sealed class Waiter(Func<string, bool> predicate, bool includeStdErr)
    {
        public Func<string, bool> Predicate { get; } = predicate;

        public bool IncludeStdErr { get; } = includeStdErr;

        public TaskCompletionSource<string> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}

/// <summary>A child process failed to start or exited before it was expected to; the message includes its output.</summary>
public sealed class ProcessHostException : Exception
{
    public ProcessHostException()
    {
        Output = string.Empty;
    }

    public ProcessHostException(string message)
        : base(message)
    {
        Output = string.Empty;
    }

    public ProcessHostException(string message, Exception innerException)
        : base(message, innerException)
    {
        Output = string.Empty;
    }

    public ProcessHostException(string message, string output, Exception? innerException = null)
        : base(message + ProcessHost.FormatOutput(output), innerException)
    {
        Output = output;
    }

    /// <summary>The output captured from the process.</summary>
    public string Output { get; }
}
