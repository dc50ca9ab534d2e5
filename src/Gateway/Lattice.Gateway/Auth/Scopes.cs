namespace Lattice.Gateway.Auth;

/// <summary>The scopes a credential may carry.</summary>
public static class Scopes
{
    public const string Inference = "lattice:compute:inference";
    public const string WorkspaceOnly = "lattice:compute:workspace_only";
    public const string Marketplace = "lattice:compute:marketplace";
    public const string CatalogRead = "lattice:compute:catalog:read";
    public const string PersonalRuntimeManage = "lattice:compute:personal_runtime:manage";
    public const string UsageRead = "lattice:compute:usage:read";
    public const string Streaming = "lattice:compute:streaming";

    /// <summary>Operator access to the admin API. Never granted to a workspace's developer keys by default.</summary>
    public const string Admin = "lattice:admin";

    /// <summary>Managing one's own workspace through the admin API: its keys, OAuth apps, grants and members.</summary>
    public const string WorkspaceAdmin = "lattice:workspace:admin";

    /// <summary>What a developer key gets when its creator names no scopes.</summary>
    public static readonly string[] DeveloperDefault =
        [Inference, CatalogRead, PersonalRuntimeManage, UsageRead, Streaming];

    public static readonly string[] Known =
        [Inference, WorkspaceOnly, Marketplace, CatalogRead, PersonalRuntimeManage, UsageRead, Streaming, WorkspaceAdmin, Admin];
}
