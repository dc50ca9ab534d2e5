using Lattice.Protocol.Metering;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Lattice.Gateway.Metering;

/// <summary>The stored form of a <see cref="UsageRecord"/>: one row per request id.</summary>
public sealed class UsageRecordEntity
{
    public required string RequestId { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public required string WorkspaceId { get; set; }
    public string? KeyId { get; set; }
    public string? AppId { get; set; }
    public string? UserId { get; set; }
    public string? GrantId { get; set; }
    public required string Task { get; set; }
    /// <summary>The API the request came through: <see cref="Surfaces"/>.</summary>
    public string Surface { get; set; } = Surfaces.OpenAi;
    public required string Model { get; set; }
    public string? ServedBy { get; set; }
    public string? ServedById { get; set; }
    public string? Capacity { get; set; }
    public bool Stream { get; set; }
    public required string Status { get; set; }
    public int HttpStatus { get; set; }
    public long PromptTokens { get; set; }
    public long CompletionTokens { get; set; }
    public long TotalTokens { get; set; }
    public long CachedTokens { get; set; }
    public long AudioMilliseconds { get; set; }
    public bool Estimated { get; set; }
    public long CostPicoUsd { get; set; }
    /// <summary>The prices the cost was computed at, as <see cref="Metering.Prices"/> JSON; null: free.</summary>
    public string? Prices { get; set; }
    public long? TimeToFirstByteMicroseconds { get; set; }
    public long DurationMicroseconds { get; set; }

    public static UsageRecordEntity From(UsageRecord r) => new()
    {
        RequestId = r.RequestId,
        CreatedAt = r.CreatedAt,
        WorkspaceId = r.WorkspaceId,
        KeyId = r.KeyId,
        AppId = r.AppId,
        UserId = r.UserId,
        GrantId = r.GrantId,
        Task = r.Task,
        Surface = r.Surface,
        Model = r.Model,
        ServedBy = r.ServedBy,
        ServedById = r.ServedById,
        Capacity = r.Capacity,
        Stream = r.Stream,
        Status = r.Status,
        HttpStatus = r.HttpStatus,
        PromptTokens = r.Usage.PromptTokens,
        CompletionTokens = r.Usage.CompletionTokens,
        TotalTokens = r.Usage.TotalTokens,
        CachedTokens = r.Usage.CachedTokens,
        AudioMilliseconds = r.Usage.AudioMilliseconds,
        Estimated = r.Usage.Estimated,
        CostPicoUsd = r.CostPicoUsd,
        Prices = r.Prices,
        TimeToFirstByteMicroseconds = r.TimeToFirstByteMicroseconds,
        DurationMicroseconds = r.DurationMicroseconds,
    };

    public UsageRecord ToRecord() => new()
    {
        RequestId = RequestId,
        CreatedAt = CreatedAt,
        WorkspaceId = WorkspaceId,
        KeyId = KeyId,
        AppId = AppId,
        UserId = UserId,
        GrantId = GrantId,
        Task = Task,
        Surface = Surface,
        Model = Model,
        ServedBy = ServedBy,
        ServedById = ServedById,
        Capacity = Capacity,
        Stream = Stream,
        Status = Status,
        HttpStatus = HttpStatus,
        Usage = new Usage(PromptTokens, CompletionTokens, TotalTokens, CachedTokens, AudioMilliseconds, Estimated),
        CostPicoUsd = CostPicoUsd,
        Prices = Prices,
        TimeToFirstByteMicroseconds = TimeToFirstByteMicroseconds,
        DurationMicroseconds = DurationMicroseconds,
    };
}

internal sealed class UsageRecordEntityConfiguration : IEntityTypeConfiguration<UsageRecordEntity>
{
    public void Configure(EntityTypeBuilder<UsageRecordEntity> b)
    {
        b.ToTable("usage_records");
        b.HasKey(x => x.RequestId);
        b.Property(x => x.RequestId).HasMaxLength(64);
        b.Property(x => x.WorkspaceId).HasMaxLength(64);
        b.Property(x => x.Model).HasMaxLength(300);
        // One secondary index: every query is one workspace's records in a time range or in time order (the usage API's
        // list and buckets, invoices, budget spend), and a key, grant, app or user narrows that range by filtering it.
        // Each index more is a B-tree insert per row on the ledger's write path, which runs on the cores serving the
        // requests it records (docs/benchmarks.md, "Fewer indexes"); the table, its request-id key and this index are
        // all the ledger maintains.
        b.HasIndex(x => new { x.WorkspaceId, x.CreatedAt });
    }
}
