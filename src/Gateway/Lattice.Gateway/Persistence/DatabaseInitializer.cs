using Lattice.Gateway.Auth;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Hosting;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Persistence;

/// <summary>What a first start created for the developer; the secrets exist only here and in what the CLI writes out.</summary>
public sealed record DevBootstrap(string WorkspaceId, string ApiKey, string AdminKey, string UserId, string UserEmail, string UserPassword);

/// <summary>
/// Migrates the database, seeds built-in task classes and the configured admin key (publishing them on the change feed
/// for nodes already running), then loads the in-memory snapshots.
/// </summary>
public sealed class DatabaseInitializer(
    LatticeDbContext db,
    IOptions<GatewayOptions> options,
    Changes.ChangeFeed feed,
    Identity.OAuthAppService apps,
    Identity.UserService users,
    Identity.RevocationSet revocations,
    Metering.UsageLedger ledger,
    TimeProvider time)
{
    public const string OperatorWorkspaceId = "ws_operator";

    public async Task InitializeAsync(CancellationToken cancellationToken = default)
    {
        if (db.Database.IsSqlite())
        {
            var builder = new Microsoft.Data.Sqlite.SqliteConnectionStringBuilder(db.Database.GetConnectionString());
            if (Path.GetDirectoryName(Path.GetFullPath(builder.DataSource)) is { } dir && builder.DataSource != ":memory:")
            {
                Directory.CreateDirectory(dir);
            }
        }
        // Nodes starting together on one PostgreSQL database migrate and seed it one after another (EF Core's own
        // migration lock does not stop two nodes creating the same table, nor covers the seeding).
        await using var turn = await StartupLock.TakeAsync(db, cancellationToken);
        await db.Database.MigrateAsync(cancellationToken);
        if (db.Database.IsSqlite())
        {
            await db.Database.ExecuteSqlRawAsync("PRAGMA journal_mode=WAL;", cancellationToken);
        }
        // Usage records a crashed or killed process left in its journal, before this one serves and adds its own.
        await ledger.RecoverAsync(cancellationToken);

        var now = time.GetUtcNow();
        foreach (var builtIn in BuiltInTaskClasses.All(now))
        {
            var existing = await db.TaskClasses.FindAsync([builtIn.Name], cancellationToken);
            if (existing is null)
            {
                db.TaskClasses.Add(builtIn);
            }
            else if (existing.BuiltIn)
            {
                existing.InputSchema = builtIn.InputSchema;
                existing.Streams = builtIn.Streams;
                existing.ContentType = builtIn.ContentType;
                existing.UpstreamPath = builtIn.UpstreamPath;
                existing.UsagePath = builtIn.UsagePath;
                existing.MeteringUnit = builtIn.MeteringUnit;
            }
        }

        db.ChangeTracker.DetectChanges();
        var seeded = db.ChangeTracker.Entries<TaskClassEntity>()
            .Where(e => e.State is EntityState.Added or EntityState.Modified).Select(e => e.Entity.Name).ToList();
        foreach (var name in seeded)
        {
            feed.Record(db, Changes.ChangeKinds.TaskClass, name);
        }

        await SeedConfiguredAdminKeyAsync(now, cancellationToken);

        await db.SaveChangesAsync(cancellationToken);
        await EnsureCliAppAsync(now, cancellationToken);
        await EnsureConsoleAppAsync(now, cancellationToken);
        // The feed is read from here on: a change committed while the snapshots load is applied again, not missed.
        await feed.StartAsync(db, cancellationToken);
        await feed.ReloadAllAsync(cancellationToken);
        // Every revocation still in force is known before the first request is served.
        await revocations.CatchUpAsync(db, cancellationToken);
    }

    /// <summary>The name the configured admin key's record carries (there is at most one in force).</summary>
    public const string ConfiguredAdminKeyName = "configured admin key";

    /// <summary>
    /// Stores the configured admin key (hashed) and retires every other key stored from configuration: after the
    /// setting changes — or is removed — the old key stops working on every node (through the change feed).
    /// </summary>
    private async Task SeedConfiguredAdminKeyAsync(DateTimeOffset now, CancellationToken cancellationToken)
    {
        string? hash = null;
        if (options.Value.AdminKey is { Length: > 0 } adminKey)
        {
            await EnsureOperatorWorkspaceAsync(now, cancellationToken);
            hash = ApiKeySecrets.Hash(adminKey);
            var existing = await db.ApiKeys.FirstOrDefaultAsync(k => k.Hash == hash, cancellationToken);
            if (existing is null)
            {
                var key = NewKey(OperatorWorkspaceId, ConfiguredAdminKeyName, adminKey, Scopes.Admin, now, null);
                db.ApiKeys.Add(key);
                feed.Record(db, Changes.ChangeKinds.Key, key.Id, key.WorkspaceId);
            }
            else if (existing.RevokedAt is not null)
            {
                // A retired (or deliberately revoked) key stays dead; bringing it back would undo the revocation.
                throw new OptionsValidationException(GatewayOptions.Section, typeof(GatewayOptions),
                    ["Lattice:AdminKey is a key that has been revoked or retired; configure a new one."]);
            }
        }
        var retired = await db.ApiKeys
            .Where(k => k.WorkspaceId == OperatorWorkspaceId && k.Name == ConfiguredAdminKeyName && k.RevokedAt == null && k.Hash != hash)
            .ToListAsync(cancellationToken);
        foreach (var key in retired)
        {
            key.RevokedAt = now;
            feed.Record(db, Changes.ChangeKinds.Key, key.Id, key.WorkspaceId);
        }
    }

    /// <summary>On a database with no developer workspace yet, creates one with a developer key and an admin key.</summary>
    public async Task<DevBootstrap?> BootstrapDevAsync(CancellationToken cancellationToken = default)
    {
        if (await db.Workspaces.AnyAsync(w => w.Id != OperatorWorkspaceId, cancellationToken))
        {
            return null;
        }
        var now = time.GetUtcNow();
        await EnsureOperatorWorkspaceAsync(now, cancellationToken);
        var workspace = new WorkspaceEntity { Id = ApiKeySecrets.NewId("ws_"), Name = "dev", CreatedAt = now };
        db.Workspaces.Add(workspace);
        var devKey = ApiKeySecrets.NewSecret();
        var adminKey = ApiKeySecrets.NewSecret("sk_admin_");
        foreach (var key in (ApiKeyEntity[])[
            NewKey(workspace.Id, "dev", devKey, string.Join(' ', Scopes.DeveloperDefault), now, null),
            NewKey(OperatorWorkspaceId, "dev admin", adminKey, Scopes.Admin, now, null)])
        {
            db.ApiKeys.Add(key);
            feed.Record(db, Changes.ChangeKinds.Key, key.Id, key.WorkspaceId);
        }
        await feed.SaveAsync(db, cancellationToken);

        var password = ApiKeySecrets.NewSecret("")[..20];
        var user = await users.CreateAsync(DevUserEmail, "Dev User", password, emailVerified: false, cancellationToken);
        await users.AddMemberAsync(workspace.Id, user.Id, "owner", cancellationToken);
        return new DevBootstrap(workspace.Id, devKey, adminKey, user.Id, user.Email, password);
    }

    public const string DevUserEmail = "dev@lattice.localhost";

    /// <summary>The public client <c>lattice login</c> uses (device authorization grant), owned by the operator.</summary>
    private async Task EnsureCliAppAsync(DateTimeOffset now, CancellationToken cancellationToken)
    {
        // email, so that `lattice login` can say who signed in.
        string[] scopes = [.. Identity.IdentityServices.GrantableScopes, "offline_access", "email"];
        if (await db.OAuthApps.AnyAsync(a => a.ClientId == Identity.IdentityServices.CliClientId, cancellationToken))
        {
            // A database made by an older version: give the client the scopes this version's CLI asks for.
            await apps.AllowScopesAsync(Identity.IdentityServices.CliClientId, scopes, cancellationToken);
            return;
        }
        await EnsureOperatorWorkspaceAsync(now, cancellationToken);
        var spec = new Identity.OAuthAppSpec("Lattice CLI", [], scopes, Confidential: false, DeviceFlow: true);
        await apps.CreateAsync(OperatorWorkspaceId, spec, Identity.IdentityServices.CliClientId, cancellationToken);
    }

    /// <summary>The web console's public client (authorization code with PKCE, first party), owned by the operator.</summary>
    private async Task EnsureConsoleAppAsync(DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (await db.OAuthApps.AnyAsync(a => a.ClientId == Console.ConsoleClient.ClientId, cancellationToken))
        {
            await apps.AllowScopesAsync(Console.ConsoleClient.ClientId, Console.ConsoleClient.Scopes, cancellationToken);
            return;
        }
        await EnsureOperatorWorkspaceAsync(now, cancellationToken);
        var spec = new Identity.OAuthAppSpec("Lattice console", [], Console.ConsoleClient.Scopes, Confidential: false, DeviceFlow: false, FirstParty: true);
        await apps.CreateAsync(OperatorWorkspaceId, spec, Console.ConsoleClient.ClientId, cancellationToken);
    }

    public static ApiKeyEntity NewKey(string workspaceId, string name, string secret, string scopes, DateTimeOffset now, DateTimeOffset? expiresAt) => new()
    {
        Id = ApiKeySecrets.NewId("key_"),
        WorkspaceId = workspaceId,
        Name = name,
        Prefix = ApiKeySecrets.DisplayPrefix(secret),
        Hash = ApiKeySecrets.Hash(secret),
        Scopes = scopes,
        CreatedAt = now,
        ExpiresAt = expiresAt,
    };

    private async Task EnsureOperatorWorkspaceAsync(DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (await db.Workspaces.FindAsync([OperatorWorkspaceId], cancellationToken) is null)
        {
            db.Workspaces.Add(new WorkspaceEntity { Id = OperatorWorkspaceId, Name = "operator", CreatedAt = now });
            await db.SaveChangesAsync(cancellationToken);
        }
    }
}
