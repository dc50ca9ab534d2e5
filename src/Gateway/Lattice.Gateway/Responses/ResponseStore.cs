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
public sealed partial class ResponseStore(IServiceScopeFactory scopes, IOptions<ResponsesOptions> options, TimeProvider time, ILogger<ResponseStore> logger)
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
        try
        {
            // The client's answer is about to leave whatever happens here, so the row is saved regardless of a cancel.
            await db.SaveChangesAsync(CancellationToken.None);
        }
        catch (Exception ex) when (ex is DbUpdateException or System.Data.Common.DbException)
        {
            // The answer still reaches the client; only continuing or reading it later will find nothing.
            LogSaveFailed(logger, id, ex.GetType().Name);
        }
    }

    [LoggerMessage(EventId = 9501, Level = LogLevel.Warning, Message = "Keeping response {ResponseId} failed ({Error}); it cannot be continued or read later")]
    private static partial void LogSaveFailed(ILogger logger, string responseId, string error);

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
