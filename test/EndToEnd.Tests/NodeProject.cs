using System.ComponentModel;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Lattice.Testing;
using Xunit.Abstractions;

namespace Lattice.EndToEnd.Tests;

/// <summary>
/// The Node project in <c>test/EndToEnd.Node</c>: installs its packages with <c>npm ci</c> when <c>node_modules</c>
/// is missing or holds other versions than the lock file, and runs <c>node --test</c> in it.
/// </summary>
internal static class NodeProject
{
    private static readonly TimeSpan InstallTimeout = TimeSpan.FromMinutes(3);

    public static string ProjectDirectory => Path.Combine(RepoPaths.RepoRoot, "test", "EndToEnd.Node");

    /// <summary>Runs <c>npm ci</c> unless every dependency in package.json is installed at the version the lock file pins.</summary>
    public static async Task EnsureInstalledAsync(ITestOutputHelper output)
    {
        var dir = ProjectDirectory;
        Assert.True(File.Exists(Path.Combine(dir, "package.json")), $"No package.json in {dir}.");
        if (InstalledMatchesLock(dir, out var why))
        {
            return;
        }
        output.WriteLine($"npm ci: {why}");
        var install = await RunAsync(NpmExecutable, ["ci", "--no-audit", "--no-fund"], dir, null, InstallTimeout);
        Assert.True(install.ExitCode == 0, $"npm ci in {dir} {install.Describe()}");
    }

    /// <summary>Runs <c>node --test</c> on <paramref name="files"/> (all test files when none) with the spec reporter.</summary>
    public static async Task<RunResult> TestAsync(IEnumerable<string> files, IDictionary<string, string?> env, TimeSpan timeout)
    {
        env["NO_COLOR"] = "1";
        // The SDKs read these; a developer's own settings must not leak into the run.
        foreach (var name in Environment.GetEnvironmentVariables().Keys.OfType<string>())
        {
            if (name.StartsWith("OPENAI_", StringComparison.OrdinalIgnoreCase) || name.StartsWith("ANTHROPIC_", StringComparison.OrdinalIgnoreCase))
            {
                env[name] = null;
            }
        }
        return await RunAsync("node", ["--test", "--test-reporter=spec", .. files], ProjectDirectory, env, timeout);
    }

    private static string NpmExecutable => OperatingSystem.IsWindows() ? "npm.cmd" : "npm";

    private static bool InstalledMatchesLock(string dir, out string why)
    {
        using var packageDoc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "package.json")));
        using var lockDoc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "package-lock.json")));
        var locked = lockDoc.RootElement.GetProperty("packages");
        foreach (var dependency in packageDoc.RootElement.GetProperty("dependencies").EnumerateObject())
        {
            var installed = Path.Combine(dir, "node_modules", dependency.Name, "package.json");
            if (!File.Exists(installed))
            {
                why = $"node_modules/{dependency.Name} is missing";
                return false;
            }
            using var installedDoc = JsonDocument.Parse(File.ReadAllText(installed));
            var pinned = locked.GetProperty("node_modules/" + dependency.Name).GetProperty("version").GetString();
            var actual = installedDoc.RootElement.GetProperty("version").GetString();
            if (!string.Equals(pinned, actual, StringComparison.Ordinal))
            {
                why = $"node_modules/{dependency.Name} is {actual}, package-lock.json pins {pinned}";
                return false;
            }
        }
        why = "";
        return true;
    }

    public static async Task<RunResult> RunAsync(
        string fileName, IEnumerable<string> args, string workingDirectory, IDictionary<string, string?>? env, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo(fileName)
        {
            WorkingDirectory = workingDirectory,
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            CreateNoWindow = true,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        foreach (var arg in args)
        {
            psi.ArgumentList.Add(arg);
        }
        foreach (var (key, value) in env ?? new Dictionary<string, string?>())
        {
            if (value is null)
            {
                psi.Environment.Remove(key);
            }
            else
            {
                psi.Environment[key] = value;
            }
        }

        var commandLine = string.Join(' ', psi.ArgumentList.Prepend(fileName));
        var captured = new StringBuilder();
        var gate = new Lock();
        void OnLine(string? line, string prefix)
        {
            if (line is null)
            {
                return;
            }
            lock (gate)
            {
                captured.Append(prefix).Append(line).Append('\n');
            }
        }

        using var process = new Process { StartInfo = psi };
        process.OutputDataReceived += (_, e) => OnLine(e.Data, "");
        process.ErrorDataReceived += (_, e) => OnLine(e.Data, ProcessHost.StdErrPrefix);

        var stopwatch = Stopwatch.StartNew();
        try
        {
            process.Start();
        }
        catch (Win32Exception ex)
        {
            return new RunResult(commandLine, -1, $"could not start '{fileName}' ({ex.Message}); is Node.js on PATH?", stopwatch.Elapsed, TimedOut: false);
        }
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        var timedOut = false;
        using (var cts = new CancellationTokenSource(timeout))
        {
            try
            {
                await process.WaitForExitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                timedOut = true;
                try
                {
                    process.Kill(entireProcessTree: true);
                }
                catch (InvalidOperationException)
                {
                    // Exited on its own in the meantime.
                }
            }
        }
        // Waits for the exit (after a kill too) and for the redirected output to be drained.
        await process.WaitForExitAsync();

        string text;
        lock (gate)
        {
            text = captured.ToString();
        }
        return new RunResult(commandLine, timedOut ? -1 : process.ExitCode, text, stopwatch.Elapsed, timedOut);
    }

    public sealed record RunResult(string CommandLine, int ExitCode, string Output, TimeSpan Elapsed, bool TimedOut)
    {
        public string Describe() =>
            (TimedOut ? $"timed out after {Elapsed.TotalSeconds:0} s and was killed" : $"exited with code {ExitCode} after {Elapsed.TotalSeconds:0.0} s")
            + $" ({CommandLine}). Output:{Environment.NewLine}{Output}";
    }
}
