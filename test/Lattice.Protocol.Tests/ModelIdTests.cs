namespace Lattice.Protocol.Tests;

public sealed class ModelIdTests
{
    [Theory]
    [InlineData("lovelace:llama-3.2-3b-instruct", ModelIdKind.Catalog, "llama-3.2-3b-instruct")]
    [InlineData("lovelace:a:b", ModelIdKind.Catalog, "a:b")]
    [InlineData("lattice:personal:lat_abc123", ModelIdKind.PersonalRuntime, "lat_abc123")]
    [InlineData("gpt-4o-mini", ModelIdKind.Alias, "gpt-4o-mini")]
    [InlineData("lattice:other", ModelIdKind.Alias, "lattice:other")]
    public void Parses_each_kind(string value, ModelIdKind kind, string name)
    {
        var id = ModelId.Parse(value);
        Assert.Equal(kind, id.Kind);
        Assert.Equal(name, id.Name);
        Assert.Equal(value, id.Value);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("lovelace:")]
    [InlineData("lattice:personal:")]
    [InlineData("lattice:personal:abc")]
    [InlineData("lattice:personal:lat_")]
    [InlineData("lovelace: chat")]
    [InlineData("lovelace:chat\n")]
    public void Rejects_what_is_not_an_id(string? value) => Assert.Equal(ModelIdKind.Invalid, ModelId.Parse(value).Kind);

    [Fact]
    public void Rejects_overlong_ids() => Assert.Equal(ModelIdKind.Invalid, ModelId.Parse("lovelace:" + new string('a', 300)).Kind);
}
