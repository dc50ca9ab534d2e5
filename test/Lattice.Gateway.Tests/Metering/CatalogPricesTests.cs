using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Metering;

/// <summary>Prices on models, offers and workspaces, and task classes' metering unit, through the admin API into the snapshots.</summary>
[Collection(GatewayCollection.Name)]
public sealed class CatalogPricesTests(GatewayFixture fixture)
{
    private CatalogSnapshot Catalog => fixture.Factory.Services.GetRequiredService<CatalogStore>().Current;

    private JsonObject Offer(string upstreamModel, JsonObject? prices = null)
    {
        var offer = GatewayFixture.Offer(fixture.StandInUrl + "/v1", upstreamModel);
        if (prices is not null)
        {
            offer["prices"] = prices;
        }
        return offer;
    }

    private static async Task<(HttpStatusCode Status, JsonObject Body)> SendAsync(HttpClient http, HttpMethod method, string path, JsonNode body)
    {
        using var response = await http.SendAsync(new HttpRequestMessage(method, path) { Content = JsonContent.Create(body) });
        return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject());
    }

    [Fact]
    public async Task A_model_and_its_offers_carry_prices_and_an_offer_without_its_own_costs_the_models()
    {
        var id = "lovelace:priced-" + Guid.NewGuid().ToString("N")[..8];
        var created = await GatewayFixture.PostAsync(fixture.Admin, "/admin/v1/models", new JsonObject
        {
            ["id"] = id,
            ["prices"] = new JsonObject { ["input_per_mtok"] = 0.15, ["output_per_mtok"] = 0.60 },
            ["offers"] = new JsonArray(
                Offer("standin-chat", new JsonObject { ["input_per_mtok"] = 0.10, ["output_per_mtok"] = 0.40, ["per_request"] = 0.000001 }),
                Offer("standin-chat")),
        });
        Assert.Equal("""{"input_per_mtok":0.15,"cached_input_per_mtok":null,"output_per_mtok":0.6,"audio_per_minute":null,"per_request":null}""", created["prices"]!.ToJsonString());
        Assert.Equal(0.000001m, created["offers"]![0]!["prices"]!["per_request"]!.GetValue<decimal>());
        Assert.Null(created["offers"]![1]!["prices"]);

        var model = Catalog.Models[id];
        Assert.Equal(new Prices { InputPerMTok = 0.15m, OutputPerMTok = 0.6m }, model.Prices);
        var own = Array.Find(model.Offers, o => o.Id == created["offers"]![0]!["id"]!.GetValue<string>())!;
        var inherited = Array.Find(model.Offers, o => o.Id == created["offers"]![1]!["id"]!.GetValue<string>())!;
        Assert.Equal(new Prices { InputPerMTok = 0.1m, OutputPerMTok = 0.4m, PerRequest = 0.000001m }, own.Prices);
        Assert.Same(model.Prices, inherited.Prices);

        // The list shows the same.
        var listed = JsonNode.Parse(await fixture.Admin.GetStringAsync("/admin/v1/models"))!["data"]!.AsArray().Single(m => m!["id"]!.GetValue<string>() == id)!;
        Assert.Equal(0.15m, listed["prices"]!["input_per_mtok"]!.GetValue<decimal>());

        // PUT without prices keeps them; {} makes the model free.
        var (status, replaced) = await SendAsync(fixture.Admin, HttpMethod.Put, "/admin/v1/models/" + id, new JsonObject { ["offers"] = new JsonArray(Offer("standin-chat")) });
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(0.15m, replaced["prices"]!["input_per_mtok"]!.GetValue<decimal>());
        Assert.Equal(0.15m, Catalog.Models[id].Offers[0].Prices.InputPerMTok);
        (status, replaced) = await SendAsync(fixture.Admin, HttpMethod.Put, "/admin/v1/models/" + id, new JsonObject { ["prices"] = new JsonObject(), ["offers"] = new JsonArray(Offer("standin-chat")) });
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Null(replaced["prices"]);
        Assert.Same(Prices.Free, Catalog.Models[id].Prices);
        Assert.Same(Prices.Free, Catalog.Models[id].Offers[0].Prices);
    }

    [Theory]
    [InlineData("""{"input_per_mtok": -0.5}""", null, "prices.input_per_mtok")]
    [InlineData("""{"input_per_mtok": 0.1234567}""", null, "prices.input_per_mtok")]
    [InlineData("""{"input_per_token": 1}""", null, "prices.input_per_token")]
    [InlineData("\"cheap\"", null, "prices")]
    [InlineData(null, """{"per_request": -1}""", "offers[0].prices.per_request")]
    public async Task Bad_prices_are_a_400_naming_the_field(string? modelPrices, string? offerPrices, string param)
    {
        var id = "lovelace:bad-price-" + Guid.NewGuid().ToString("N")[..8];
        var body = new JsonObject
        {
            ["id"] = id,
            ["offers"] = new JsonArray(Offer("standin-chat", offerPrices is null ? null : JsonNode.Parse(offerPrices)!.AsObject())),
        };
        if (modelPrices is not null)
        {
            body["prices"] = JsonNode.Parse(modelPrices);
        }
        var (status, error) = await SendAsync(fixture.Admin, HttpMethod.Post, "/admin/v1/models", body);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal(param, error["error"]!["param"]!.GetValue<string>());
        Assert.Equal("invalid_request_error", error["error"]!["type"]!.GetValue<string>());
        Assert.False(Catalog.Models.ContainsKey(id));
    }

    [Fact]
    public async Task Task_classes_take_a_metering_unit_into_the_snapshot()
    {
        var name = "metered-" + Guid.NewGuid().ToString("N")[..8];
        var created = await GatewayFixture.PostAsync(fixture.Admin, "/admin/v1/task-classes", new JsonObject
        {
            ["name"] = name,
            ["metering_unit"] = "requests",
            ["input_schema"] = new JsonObject { ["type"] = "object" },
        });
        Assert.Equal("requests", created["metering_unit"]!.GetValue<string>());
        Assert.Equal(MeteringUnits.Requests, Catalog.Tasks[name].MeteringUnit);
        Assert.Equal(MeteringUnits.Seconds, Catalog.Tasks[BuiltInTaskClasses.AudioTranscriptions].MeteringUnit);
        Assert.Equal(MeteringUnits.Tokens, Catalog.Tasks[BuiltInTaskClasses.ChatCompletions].MeteringUnit);

        var builtIn = JsonNode.Parse(await fixture.Admin.GetStringAsync("/admin/v1/task-classes/audio.transcriptions"))!;
        Assert.Equal("seconds", builtIn["metering_unit"]!.GetValue<string>());

        var (status, error) = await SendAsync(fixture.Admin, HttpMethod.Post, "/admin/v1/task-classes", new JsonObject
        {
            ["name"] = name + "-bad",
            ["metering_unit"] = "characters",
            ["input_schema"] = new JsonObject { ["type"] = "object" },
        });
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("metering_unit", error["error"]!["param"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_workspace_admin_sets_its_own_personal_runtime_prices_and_no_one_elses()
    {
        var store = fixture.Factory.Services.GetRequiredService<WorkspacePrices>();
        var own = (await GatewayFixture.PostAsync(fixture.Admin, "/admin/v1/workspaces", new JsonObject { ["name"] = "priced" }))["id"]!.GetValue<string>();
        var other = (await GatewayFixture.PostAsync(fixture.Admin, "/admin/v1/workspaces", new JsonObject { ["name"] = "other" }))["id"]!.GetValue<string>();
        var key = (await GatewayFixture.PostAsync(fixture.Admin, $"/admin/v1/workspaces/{own}/keys", new JsonObject
        {
            ["scopes"] = new JsonArray("lattice:workspace:admin"),
        }))["key"]!.GetValue<string>();
        using var admin = fixture.Client(key);

        Assert.Same(Prices.Free, store.For(own));
        var initial = JsonNode.Parse(await admin.GetStringAsync($"/admin/v1/workspaces/{own}/prices"))!;
        Assert.Equal($$"""{"workspace_id":"{{own}}","prices":null}""", initial.ToJsonString());

        var (status, set) = await SendAsync(admin, HttpMethod.Put, $"/admin/v1/workspaces/{own}/prices", new JsonObject
        {
            ["prices"] = new JsonObject { ["input_per_mtok"] = 0.05, ["output_per_mtok"] = 0.05 },
        });
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(0.05m, set["prices"]!["output_per_mtok"]!.GetValue<decimal>());
        Assert.Equal(new Prices { InputPerMTok = 0.05m, OutputPerMTok = 0.05m }, store.For(own));
        Assert.Same(Prices.Free, store.For(other));

        // Another workspace's prices are not there for this admin, to read or to write.
        using (var read = await admin.GetAsync($"/admin/v1/workspaces/{other}/prices"))
        {
            Assert.Equal(HttpStatusCode.NotFound, read.StatusCode);
        }
        (status, _) = await SendAsync(admin, HttpMethod.Put, $"/admin/v1/workspaces/{other}/prices", new JsonObject { ["prices"] = new JsonObject { ["per_request"] = 1 } });
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Same(Prices.Free, store.For(other));

        // Bad bodies are a 400 naming the field, and change nothing.
        (status, var error) = await SendAsync(admin, HttpMethod.Put, $"/admin/v1/workspaces/{own}/prices", new JsonObject { ["prices"] = new JsonObject { ["per_request"] = -1 } });
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("prices.per_request", error["error"]!["param"]!.GetValue<string>());
        (status, error) = await SendAsync(admin, HttpMethod.Put, $"/admin/v1/workspaces/{own}/prices", new JsonObject());
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("prices", error["error"]!["param"]!.GetValue<string>());
        Assert.Equal(0.05m, store.For(own).InputPerMTok);

        // The operator may set anyone's; {} makes them free again.
        (status, set) = await SendAsync(fixture.Admin, HttpMethod.Put, $"/admin/v1/workspaces/{own}/prices", new JsonObject { ["prices"] = new JsonObject() });
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Null(set["prices"]);
        Assert.Same(Prices.Free, store.For(own));
    }
}
