using System.Text;
using Lattice.Runtime.Engines;

namespace Lattice.Runtime.Tests.Engines;

/// <summary>An <see cref="IEngineOutput"/> that keeps what an engine wrote, write by write.</summary>
public sealed class RecordingOutput : IEngineOutput
{
    private readonly List<byte[]> _writes = [];

    public int? Status { get; private set; }
    public string? ContentType { get; private set; }
    public IReadOnlyList<byte[]> Writes => _writes;
    public string Text => Encoding.UTF8.GetString(_writes.SelectMany(w => w).ToArray());

    /// <summary>The engine's last <see cref="IEngineOutput.ReportUsage"/>, and how many reports it made.</summary>
    public EngineUsage LastReportedUsage { get; private set; }
    public int UsageReports { get; private set; }

    public void ReportUsage(EngineUsage usageSoFar)
    {
        LastReportedUsage = usageSoFar;
        UsageReports++;
    }

    public ValueTask StartAsync(int status, string contentType, CancellationToken cancellationToken)
    {
        if (Status is not null)
        {
            throw new InvalidOperationException("StartAsync was called twice.");
        }
        Status = status;
        ContentType = contentType;
        return ValueTask.CompletedTask;
    }

    public ValueTask WriteAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken)
    {
        if (Status is null)
        {
            throw new InvalidOperationException("WriteAsync before StartAsync.");
        }
        lock (_writes)
        {
            _writes.Add(bytes.ToArray());
        }
        return ValueTask.CompletedTask;
    }
}
