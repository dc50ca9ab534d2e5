namespace Lattice.Protocol;

/// <summary>The kinds of model identifier a request may name.</summary>
public enum ModelIdKind
{
    /// <summary>Not a syntactically valid identifier.</summary>
    Invalid,
    /// <summary><c>lovelace:&lt;name&gt;</c>: a canonical catalog model.</summary>
    Catalog,
    /// <summary><c>lattice:personal:&lt;latticeId&gt;</c>: one specific personal runtime.</summary>
    PersonalRuntime,
    /// <summary>Anything else: an alias the catalog may know (e.g. a bare vendor name).</summary>
    Alias,
}

/// <summary>The model-id grammar shared by the gateway, the daemon and the SDK.</summary>
public readonly record struct ModelId(ModelIdKind Kind, string Value, string Name)
{
    public const string CatalogPrefix = "lovelace:";
    public const string PersonalPrefix = "lattice:personal:";
    public const string LatticeIdPrefix = "lat_";

    /// <summary>Parses <paramref name="value"/>; never throws.</summary>
    public static ModelId Parse(string? value)
    {
        if (string.IsNullOrWhiteSpace(value) || value.Length > 256 || HasControlOrSpace(value))
        {
            return new ModelId(ModelIdKind.Invalid, value ?? "", "");
        }

        if (value.StartsWith(CatalogPrefix, StringComparison.Ordinal))
        {
            var name = value[CatalogPrefix.Length..];
            return name.Length == 0
                ? new ModelId(ModelIdKind.Invalid, value, "")
                : new ModelId(ModelIdKind.Catalog, value, name);
        }

        if (value.StartsWith(PersonalPrefix, StringComparison.Ordinal))
        {
            var id = value[PersonalPrefix.Length..];
            return id.StartsWith(LatticeIdPrefix, StringComparison.Ordinal) && id.Length > LatticeIdPrefix.Length
                ? new ModelId(ModelIdKind.PersonalRuntime, value, id)
                : new ModelId(ModelIdKind.Invalid, value, "");
        }

        return new ModelId(ModelIdKind.Alias, value, value);
    }

    private static bool HasControlOrSpace(string value)
    {
        foreach (var c in value)
        {
            if (char.IsControl(c) || char.IsWhiteSpace(c))
            {
                return true;
            }
        }
        return false;
    }
}
