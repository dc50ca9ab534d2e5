using System.Text.Json;
using Lattice.Gateway.Metering;

namespace Lattice.Gateway.Tests.Metering;

public sealed class PricesJsonTests
{
    private static (bool Ok, Prices Prices, string? Param, string? Code) Read(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var ok = PricesJson.TryRead(doc.RootElement, "offers[1].prices", out var prices, out var error);
        return (ok, prices, error.Param, error.Code);
    }

    [Fact]
    public void Reads_every_price_and_drops_trailing_zeros()
    {
        var (ok, prices, _, _) = Read("""{"input_per_mtok": 2.50, "cached_input_per_mtok": 1.25, "output_per_mtok": 10, "audio_per_minute": 0.006, "per_request": 0.000001}""");
        Assert.True(ok);
        Assert.Equal(new Prices { InputPerMTok = 2.5m, CachedInputPerMTok = 1.25m, OutputPerMTok = 10m, AudioPerMinute = 0.006m, PerRequest = 0.000001m }, prices);
        Assert.Equal("""{"input_per_mtok":2.5,"cached_input_per_mtok":1.25,"output_per_mtok":10,"audio_per_minute":0.006,"per_request":0.000001}""", PricesJson.ToStored(prices));
    }

    [Fact]
    public void Nothing_priced_is_free_and_stored_as_null()
    {
        var (ok, prices, _, _) = Read("""{"input_per_mtok": null}""");
        Assert.True(ok);
        Assert.True(PricesJson.IsFree(prices));
        Assert.Null(PricesJson.ToStored(prices));
        Assert.True(PricesJson.TryFromStored(null, out var stored));
        Assert.Null(stored);
    }

    [Theory]
    [InlineData("""{"input_per_mtok": -1}""", "offers[1].prices.input_per_mtok", "invalid_value")]
    [InlineData("""{"output_per_mtok": 0.0000001}""", "offers[1].prices.output_per_mtok", "invalid_value")]
    [InlineData("""{"per_request": 1000001}""", "offers[1].prices.per_request", "invalid_value")]
    [InlineData("""{"audio_per_minute": "0.006"}""", "offers[1].prices.audio_per_minute", "invalid_type")]
    [InlineData("""{"input_per_million": 1}""", "offers[1].prices.input_per_million", "unknown_parameter")]
    [InlineData("""[1, 2]""", "offers[1].prices", "invalid_type")]
    [InlineData("""3""", "offers[1].prices", "invalid_type")]
    public void Bad_prices_are_refused_naming_the_field(string json, string param, string code)
    {
        var (ok, _, actualParam, actualCode) = Read(json);
        Assert.False(ok);
        Assert.Equal(param, actualParam);
        Assert.Equal(code, actualCode);
    }

    [Fact]
    public void Six_decimals_are_allowed_even_when_written_with_trailing_zeros()
    {
        Assert.True(Read("""{"input_per_mtok": 0.1234560000}""").Ok);
        Assert.True(Read("""{"input_per_mtok": 1e-6}""").Ok);
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("""{"input_per_mtok": -3}""")]
    public void Stored_text_that_is_not_prices_does_not_read(string stored)
    {
        Assert.False(PricesJson.TryFromStored(stored, out _));
    }
}
