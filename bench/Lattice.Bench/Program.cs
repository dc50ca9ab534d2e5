using System.Runtime.InteropServices;
using Lattice.Bench;

BenchOptions options;
try
{
    options = BenchOptions.Parse(args);
}
catch (BenchException ex)
{
    Console.Error.WriteLine("bench: " + ex.Message);
    return 2;
}
if (options.Help)
{
    Console.WriteLine(BenchOptions.Usage);
    return 0;
}

using var cts = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    if (!cts.IsCancellationRequested)
    {
        // First Ctrl-C: stop after the current requests and clean up; a second one kills at once.
        e.Cancel = true;
        Console.Error.WriteLine("bench: stopping (Ctrl-C again to kill now)…");
        cts.Cancel();
    }
    else
    {
        ChildProcess.KillAll();
    }
};
// SIGTERM / SIGHUP: stop like Ctrl-C, so the servers are killed and the data directory removed.
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
using var sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, Stop);
AppDomain.CurrentDomain.ProcessExit += (_, _) => ChildProcess.KillAll();
AppDomain.CurrentDomain.UnhandledException += (_, _) => ChildProcess.KillAll();

void Stop(PosixSignalContext context)
{
    context.Cancel = true;
    Console.Error.WriteLine($"bench: {context.Signal}, stopping…");
    cts.Cancel();
    ChildProcess.KillAll();
}

try
{
    return options.Soak || options.Faults ? await SoakBench.RunAsync(options, cts.Token)
        : options.Ledger ? await LedgerBench.RunAsync(options, cts.Token)
        : options.Auth ? await AuthBench.RunAsync(options, cts.Token)
        : options.Sealed ? await SealedBench.RunAsync(options, cts.Token)
        : options.Runtime ? await RuntimeBench.RunAsync(options, cts.Token)
        : options.CrossNode ? await CrossNodeBench.RunAsync(options, cts.Token)
        : await BenchRun.RunAsync(options, cts.Token);
}
catch (BenchException ex)
{
    Console.Error.WriteLine("bench: " + ex.Message);
    return 2;
}
catch (OperationCanceledException) when (cts.IsCancellationRequested)
{
    Console.Error.WriteLine("bench: cancelled.");
    return 130;
}
finally
{
    ChildProcess.KillAll();
}
