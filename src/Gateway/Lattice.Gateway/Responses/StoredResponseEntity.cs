using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Lattice.Gateway.Responses;

/// <summary>
/// A response the Responses API kept (<c>store: true</c>): its rendered object for <c>GET /v1/responses/{id}</c>, and
/// the conversation it ended, so a later request can continue it with <c>previous_response_id</c>. Kept in the
/// workspace that created it until <see cref="ExpiresAt"/>.
/// </summary>
public sealed class StoredResponseEntity
{
    /// <summary><c>resp_…</c>.</summary>
    public required string Id { get; set; }
    public required string WorkspaceId { get; set; }
    /// <summary>The developer key that created it, for key callers.</summary>
    public string? KeyId { get; set; }
    /// <summary>The OAuth app and user that created it, for access-token callers.</summary>
    public string? AppId { get; set; }
    public string? UserId { get; set; }
    /// <summary>The model as the client requested it.</summary>
    public required string Model { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    /// <summary>When the retention setting lets it go; the pruner deletes it after this.</summary>
    public DateTimeOffset ExpiresAt { get; set; }
    /// <summary>The input items of the whole conversation up to this response (JSON array), previous turns included.</summary>
    public required string Input { get; set; }
    /// <summary>The response object exactly as the client received it (JSON).</summary>
    public required string Body { get; set; }
}

internal sealed class StoredResponseEntityConfiguration : IEntityTypeConfiguration<StoredResponseEntity>
{
    public void Configure(EntityTypeBuilder<StoredResponseEntity> b)
    {
        b.ToTable("responses");
        b.HasKey(x => x.Id);
        b.Property(x => x.Id).HasMaxLength(64);
        b.Property(x => x.WorkspaceId).HasMaxLength(64);
        b.Property(x => x.Model).HasMaxLength(300);
        b.HasIndex(x => x.ExpiresAt);
        b.HasIndex(x => new { x.WorkspaceId, x.CreatedAt });
    }
}
