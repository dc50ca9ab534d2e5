using System.Text.Json;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Responses;

/// <summary>
/// The responses the Responses API keeps (<c>store: true</c>), per workspace: saved when they complete, found by id
/// only from their own workspace, deleted on request or once <see cref="ResponsesOptions.RetentionDays"/> have passed
/// (an expired one is already treated as absent).
/// </summary>
public sealed class ResponseStore(IServiceScopeFactory scopes, IOptions<ResponsesOptions> options, TimeProvider time)
{
    public async Task SaveAsync(Caller caller, string id, string model, byte[] inputItems, byte[] body, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        db.StoredResponses.Add(new StoredResponseEntity
        {
            Id = id,
            WorkspaceId = caller.WorkspaceId,
            KeyId = caller.Kind == CredentialKind.ApiKey ? caller.CredentialId : null,
            AppId = caller.ClientId,
            UserId = caller.UserId,
            Model = model,
            CreatedAt = now,
            ExpiresAt = now.AddDays(options.Value.RetentionDays),
            Input = System.Text.Encoding.UTF8.GetString(inputItems),
            Body = System.Text.Encoding.UTF8.GetString(body),
        });
        // The client's request is over by the time this could be cancelled; the row is saved regardless.
        await db.SaveChangesAsync(CancellationToken.None);
    }

    /// <summary>The response <paramref name="id"/> of <paramref name="workspaceId"/>, unless it expired.</summary>
    public async Task<StoredResponseEntity?> FindAsync(string workspaceId, string id, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        return await db.StoredResponses.AsNoTracking()
            .Where(r => r.Id == id && r.WorkspaceId == workspaceId && r.ExpiresAt > now)
            .FirstOrDefaultAsync(cancellationToken);
    }

    public async Task<bool> DeleteAsync(string workspaceId, string id, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        return await db.StoredResponses.Where(r => r.Id == id && r.WorkspaceId == workspaceId && r.ExpiresAt > now).ExecuteDeleteAsync(cancellationToken) > 0;
    }

    /// <summary>Deletes up to <paramref name="batch"/> expired responses; returns how many went.</summary>
    public async ValueTask<int> PruneAsync(int batch, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        return await db.StoredResponses.Where(r => r.ExpiresAt <= now).OrderBy(r => r.ExpiresAt).Take(batch).ExecuteDeleteAsync(cancellationToken);
    }

    /// <summary>
    /// The conversation a stored response ends, as items: its input items, then its output items — what a request
    /// naming it as <c>previous_response_id</c> continues.
    /// </summary>
    public static (JsonDocument Input, JsonDocument Body) Conversation(StoredResponseEntity stored) =>
        (JsonDocument.Parse(stored.Input), JsonDocument.Parse(stored.Body));
}
