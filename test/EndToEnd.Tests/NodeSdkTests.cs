using System.ComponentModel;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Lattice.Testing;
using Xunit.Abstractions;

namespace Lattice.EndToEnd.Tests;

/// <summary>
/// Runs the tests in <c>test/EndToEnd.Node</c> (<c>node --test</c>), which drive the gateway with the unmodified
/// official <c>openai</c> npm package. Installs it with <c>npm ci</c> first when <c>node_modules</c> is missing or
/// holds a different version than the lock file.
/// </summary>
[Collection(StackCollection.Name)]
public sealed class NodeSdkTests(StackFixture stack, ITestOutputHelper output)
{
    private static readonly TimeSpan InstallTimeout = TimeSpan.FromMinutes(3);
    private static readonly TimeSpan TestTimeout = TimeSpan.FromMinutes(5);

    private static string NodeProjectDir => Path.Combine(RepoPaths.RepoRoot, "test", "EndToEnd.Node");

    [Fact]
    public async Task Openai_npm_sdk_tests_pass_against_the_gateway()
    {
        var dir = NodeProjectDir;
        Assert.True(File.Exists(Path.Combine(dir, "package.json")), $"No package.json in {dir}.");

        if (!InstalledOpenAiMatchesLock(dir, out var why))
        {
            output.WriteLine($"npm ci: {why}");
            var install = await RunAsync(NpmExecutable, ["ci", "--no-audit", "--no-fund"], dir, null, InstallTimeout);
            Assert.True(install.ExitCode == 0, $"npm ci in {dir} {install.Describe()}");
        }

        var env = new Dictionary<string, string?>
        {
            ["LATTICE_BASE_URL"] = stack.BaseUrl,
            ["LATTICE_API_KEY"] = stack.ApiKey,
            ["LATTICE_STANDIN_URL"] = stack.StandInUrl,
            ["NO_COLOR"] = "1",
        };
        // The SDK reads these; a developer's own settings must not leak into the run.
        foreach (var name in Environment.GetEnvironmentVariables().Keys.OfType<string>())
        {
            if (name.StartsWith("OPENAI_", StringComparison.OrdinalIgnoreCase))
            {
                env[name] = null;
            }
        }

        var run = await RunAsync("node", ["--test", "--test-reporter=spec"], dir, env, TestTimeout);
        Assert.True(run.ExitCode == 0, $"node --test in {dir} {run.Describe()}");
        output.WriteLine(run.Output);
    }

    private static string NpmExecutable => OperatingSystem.IsWindows() ? "npm.cmd" : "npm";

    /// <summary>Whether <c>node_modules/openai</c> exists with the version <c>package-lock.json</c> pins.</summary>
    private static bool InstalledOpenAiMatchesLock(string dir, out string why)
    {
        var installed = Path.Combine(dir, "node_modules", "openai", "package.json");
        if (!File.Exists(installed))
        {
            why = "node_modules/openai is missing";
            return false;
        }

        using var lockDoc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "package-lock.json")));
        using var installedDoc = JsonDocument.Parse(File.ReadAllText(installed));
        var locked = lockDoc.RootElement.GetProperty("packages").GetProperty("node_modules/openai").GetProperty("version").GetString();
        var actual = installedDoc.RootElement.GetProperty("version").GetString();
        why = $"node_modules/openai is {actual}, package-lock.json pins {locked}";
        return string.Equals(locked, actual, StringComparison.Ordinal);
    }

    private static async Task<RunResult> RunAsync(
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

    private sealed record RunResult(string CommandLine, int ExitCode, string Output, TimeSpan Elapsed, bool TimedOut)
    {
        public string Describe() =>
            (TimedOut ? $"timed out after {Elapsed.TotalSeconds:0} s and was killed" : $"exited with code {ExitCode} after {Elapsed.TotalSeconds:0.0} s")
            + $" ({CommandLine}). Output:{Environment.NewLine}{Output}";
    }
}
