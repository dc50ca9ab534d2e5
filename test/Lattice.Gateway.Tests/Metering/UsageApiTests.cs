using System.Net;
using System.Text.Json.Nodes;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Identity;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Persistence;
using Lattice.Gateway.Tests.Identity;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.Testing;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Metering;

/// <summary>
/// <c>GET /v1/usage/requests</c> and <c>GET /v1/usage</c> over records written straight into the table: order, paging,
/// filters, buckets and their exact sums, who sees what (two workspaces, two grants), scopes and bad parameters.
/// </summary>
public abstract class UsageApiTests(UsageApiTests.World world)
{
    /// <summary>Midnight UTC: every record's time is an offset from it, never the wall clock.</summary>
    public static readonly DateTimeOffset T0 = new(2026, 3, 1, 0, 0, 0, TimeSpan.Zero);

    public static long Unix(TimeSpan offset) => (T0 + offset).ToUnixTimeSeconds();

    /// <summary>Two workspaces with seeded records; the gateway on SQLite, or on <paramref name="postgres"/> when given.</summary>
    public class World(PostgresFixture? postgres) : IAsyncLifetime
    {
        public OAuthGateway Server { get; private set; } = null!;

        /// <summary>Keys with only <c>usage:read</c>, of A and of B.</summary>
        public string ReaderA { get; private set; } = "";
        public string ReaderB { get; private set; } = "";
        /// <summary>A's user's tokens for A's two apps: two grants.</summary>
        public string TokenA { get; private set; } = "";
        public string TokenA2 { get; private set; } = "";
        public string GrantA { get; private set; } = "";
        public string GrantA2 { get; private set; } = "";

        public async Task InitializeAsync()
        {
            Server = postgres is null ? new OAuthGateway() : OAuthGateway.With(new() { ["Lattice:Database"] = await postgres.DatabaseAsync(typeof(UsageApiTests)) });
            await Server.InitializeAsync();
            ReaderA = await Credentials.KeyAsync(Server, Server.A.WorkspaceId, [Scopes.UsageRead]);
            ReaderB = await Credentials.KeyAsync(Server, Server.B.WorkspaceId, [Scopes.UsageRead]);
            TokenA = await Credentials.TokenAsync(Server, Server.A, [Scopes.UsageRead]);
            TokenA2 = await Credentials.TokenAsync(Server, Server.A, Server.A.PublicClientId, null, [Scopes.UsageRead]);
            GrantA = GrantOf(TokenA);
            GrantA2 = GrantOf(TokenA2);
            Assert.NotEqual(GrantA, GrantA2);

            var a = Server.A;
            using var scope = Server.Services.CreateScope();
            var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
            db.UsageRecords.AddRange(
                Record("req_a01", TimeSpan.FromMinutes(10), a.WorkspaceId, r =>
                {
                    r.KeyId = "key_a1";
                    r.PromptTokens = 100;
                    r.CompletionTokens = 20;
                    r.TotalTokens = 120;
                    r.CachedTokens = 10;
                    r.CostPicoUsd = 1_500_000_000;
                }),
                Record("req_a02", TimeSpan.FromMinutes(10), a.WorkspaceId, r =>
                {
                    r.KeyId = "key_a2";
                    r.PromptTokens = 200;
                    r.CompletionTokens = 30;
                    r.TotalTokens = 230;
                    r.CostPicoUsd = 2_000_000_001;
                }),
                Record("req_a03", TimeSpan.FromMinutes(70), a.WorkspaceId, r =>
                {
                    r.KeyId = "key_a2";
                    r.Task = "audio.transcriptions";
                    r.Model = "lovelace:whisper";
                    r.AudioMilliseconds = 1500;
                    r.TimeToFirstByteMicroseconds = 2500;
                    r.CostPicoUsd = 250_000_000;
                }),
                Record("req_a04", TimeSpan.FromMinutes(130), a.WorkspaceId, r =>
                {
                    r.GrantId = GrantA;
                    r.AppId = a.ClientId;
                    r.UserId = a.UserId;
                    r.ServedBy = ServedByKinds.Upstream;
                    r.ServedById = "off_1";
                    r.Capacity = CapacityClasses.Hosted;
                    r.Stream = true;
                    r.Status = "upstream_error";
                    r.HttpStatus = 502;
                    r.PromptTokens = 1000;
                    r.CompletionTokens = 200;
                    r.TotalTokens = 1200;
                    r.Estimated = true;
                    r.CostPicoUsd = 3_000_000_000_000;
                    r.DurationMicroseconds = 1_234_567;
                }),
                Record("req_a05", TimeSpan.FromMinutes(135), a.WorkspaceId, r =>
                {
                    r.GrantId = GrantA2;
                    r.AppId = a.PublicClientId;
                    r.UserId = a.UserId;
                    r.PromptTokens = 7;
                    r.CompletionTokens = 3;
                    r.TotalTokens = 10;
                    r.CostPicoUsd = 1;
                }),
                // The day before: outside every range below that starts at T0.
                Record("req_a00", TimeSpan.FromMinutes(-1), a.WorkspaceId, r =>
                {
                    r.KeyId = "key_a1";
                    r.CostPicoUsd = 5;
                }),
                Record("req_b01", TimeSpan.FromMinutes(10), Server.B.WorkspaceId, r =>
                {
                    r.KeyId = "key_b1";
                    r.PromptTokens = 999_999;
                    r.CostPicoUsd = 999;
                }));
            await db.SaveChangesAsync();
        }

        private string GrantOf(string token)
        {
            var failure = Server.Services.GetRequiredService<AccessTokenValidator>().Validate(token, out var caller);
            Assert.Equal(AuthFailure.None, failure);
            return caller!.CredentialId;
        }

        private static UsageRecordEntity Record(string id, TimeSpan at, string workspaceId, Action<UsageRecordEntity> set)
        {
            var record = new UsageRecordEntity
            {
                RequestId = id,
                CreatedAt = T0 + at,
                WorkspaceId = workspaceId,
                Task = "chat.completions",
                Model = "lovelace:chat",
                Status = UsageStatuses.Ok,
                HttpStatus = 200,
                DurationMicroseconds = 1000,
            };
            set(record);
            return record;
        }

        public Task DisposeAsync() => Server.DisposeAsync();
    }

    private OAuthGateway Server => world.Server;

    private async Task<JsonObject> GetAsync(string credential, string path)
    {
        using var http = Server.Client(credential);
        using var response = await http.GetAsync(path);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{path}: {(int)response.StatusCode} {text}");
        return JsonNode.Parse(text)!.AsObject();
    }

    private async Task<string[]> IdsAsync(string credential, string query)
    {
        var page = await GetAsync(credential, "v1/usage/requests" + query);
        return page["data"]!.AsArray().Select(r => r!["request_id"]!.GetValue<string>()).ToArray();
    }

    // ---- /v1/usage/requests ----

    [Fact]
    public async Task Records_come_newest_first_ties_by_request_id_and_page_with_after()
    {
        string[] newestFirst = ["req_a05", "req_a04", "req_a03", "req_a02", "req_a01", "req_a00"];
        Assert.Equal(newestFirst, await IdsAsync(world.ReaderA, ""));

        var seen = new List<string>();
        var query = "?limit=2";
        while (true)
        {
            var page = await GetAsync(world.ReaderA, "v1/usage/requests" + query);
            Assert.Equal("list", page["object"]!.GetValue<string>());
            var ids = page["data"]!.AsArray().Select(r => r!["request_id"]!.GetValue<string>()).ToList();
            seen.AddRange(ids);
            var hasMore = page["has_more"]!.GetValue<bool>();
            Assert.Equal(seen.Count < newestFirst.Length, hasMore);
            if (!hasMore)
            {
                break;
            }
            query = "?limit=2&after=" + ids[^1];
        }
        Assert.Equal(newestFirst, seen);
        Assert.Empty(await IdsAsync(world.ReaderA, "?after=req_a00"));
    }

    [Fact]
    public async Task A_record_shows_who_what_how_it_ended_what_it_used_and_cost()
    {
        var page = await GetAsync(world.ReaderA, "v1/usage/requests?status=upstream_error");
        var a = Server.A;
        var expected = JsonNode.Parse($$"""
            {"object":"usage.request","request_id":"req_a04","created_at":{{Unix(TimeSpan.FromMinutes(130))}},"workspace_id":"{{a.WorkspaceId}}",
             "key_id":null,"app_id":"{{a.ClientId}}","user_id":"{{a.UserId}}","task":"chat.completions","surface":"openai","model":"lovelace:chat",
             "served_by":{"type":"upstream","id":"off_1"},"capacity":"hosted","stream":true,"status":"upstream_error","http_status":502,
             "usage":{"prompt_tokens":1000,"completion_tokens":200,"total_tokens":1200,"cached_tokens":0,"audio_seconds":0},
             "estimated":true,"cost_usd":"3","time_to_first_byte_ms":null,"duration_ms":1234}
            """);
        Assert.Equal("""{"object":"list","data":[X],"has_more":false}""".Replace("X", expected!.ToJsonString(), StringComparison.Ordinal), page.ToJsonString());

        var audio = (await GetAsync(world.ReaderA, "v1/usage/requests?model=lovelace:whisper"))["data"]![0]!;
        Assert.Equal(1.5m, audio["usage"]!["audio_seconds"]!.GetValue<decimal>());
        Assert.Equal(2, audio["time_to_first_byte_ms"]!.GetValue<long>());
        Assert.Equal("0.00025", audio["cost_usd"]!.GetValue<string>());
        Assert.Null(audio["served_by"]);
    }

    [Fact]
    public async Task Filters_narrow_by_model_key_and_status()
    {
        Assert.Equal(["req_a03"], await IdsAsync(world.ReaderA, "?model=lovelace:whisper"));
        Assert.Equal(["req_a01", "req_a00"], await IdsAsync(world.ReaderA, "?key_id=key_a1"));
        Assert.Equal(["req_a04"], await IdsAsync(world.ReaderA, "?status=upstream_error"));
        Assert.Equal(["req_a02"], await IdsAsync(world.ReaderA, "?model=lovelace:chat&key_id=key_a2"));
        Assert.Equal(["req_a01", "req_a00"], await IdsAsync(world.ReaderA, "?key_id=key_a1&after=req_a02"));
        Assert.Empty(await IdsAsync(world.ReaderA, "?model=lovelace:none"));
    }

    [Fact]
    public async Task A_workspace_never_sees_anothers_records_whatever_the_filters()
    {
        Assert.Equal(["req_b01"], await IdsAsync(world.ReaderB, ""));
        Assert.Equal(["req_b01"], await IdsAsync(world.ReaderB, "?model=lovelace:chat"));
        Assert.Empty(await IdsAsync(world.ReaderB, "?key_id=key_a1"));
        Assert.DoesNotContain("req_b01", await IdsAsync(world.ReaderA, "?limit=100"));
        Assert.Empty(await IdsAsync(world.ReaderA, "?key_id=key_b1"));

        // Another tenant's request id as a cursor answers exactly like an id that does not exist.
        using var http = Server.Client(world.ReaderB);
        var theirs = await (await http.GetAsync("v1/usage/requests?after=req_a01")).Content.ReadAsStringAsync();
        var none = await (await http.GetAsync("v1/usage/requests?after=req_zz")).Content.ReadAsStringAsync();
        Assert.Equal(none.Replace("req_zz", "req_a01", StringComparison.Ordinal), theirs);

        var totals = await GetAsync(world.ReaderB, $"v1/usage?start_time={Unix(TimeSpan.Zero)}&end_time={Unix(TimeSpan.FromDays(1))}");
        var result = totals["data"]![0]!["results"]!.AsArray().Single()!;
        Assert.Equal(1, result["num_model_requests"]!.GetValue<long>());
        Assert.Equal(999_999, result["input_tokens"]!.GetValue<long>());
        Assert.Equal("0.000000000999", result["cost_usd"]!.GetValue<string>());
    }

    [Fact]
    public async Task An_access_token_sees_only_its_own_grants_records()
    {
        Assert.Equal(["req_a04"], await IdsAsync(world.TokenA, ""));
        Assert.Equal(["req_a05"], await IdsAsync(world.TokenA2, ""));
        Assert.Empty(await IdsAsync(world.TokenA, "?key_id=key_a1"));
        using (var http = Server.Client(world.TokenA))
        using (var response = await http.GetAsync("v1/usage/requests?after=req_a05"))
        {
            // The other grant's record is not a cursor this token can use.
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        }

        var day = $"v1/usage?start_time={Unix(TimeSpan.Zero)}&end_time={Unix(TimeSpan.FromDays(1))}&group_by=app_id";
        var result = (await GetAsync(world.TokenA, day))["data"]![0]!["results"]!.AsArray().Single()!;
        Assert.Equal(1, result["num_model_requests"]!.GetValue<long>());
        Assert.Equal("3", result["cost_usd"]!.GetValue<string>());
        Assert.Equal(Server.A.ClientId, result["app_id"]!.GetValue<string>());
    }

    // ---- /v1/usage ----

    [Fact]
    public async Task Buckets_are_aligned_to_their_width_and_hold_exact_sums()
    {
        // From 00:05 (inside the first hour) to 03:00: three hourly buckets, the first starting at 00:00.
        var page = await GetAsync(world.ReaderA, $"v1/usage?start_time={Unix(TimeSpan.FromMinutes(5))}&end_time={Unix(TimeSpan.FromHours(3))}&bucket_width=1h");
        OpenApiContract.AssertValid("UsageResponse", page.ToJsonString());
        var buckets = page["data"]!.AsArray();
        Assert.Equal([Unix(TimeSpan.Zero), Unix(TimeSpan.FromHours(1)), Unix(TimeSpan.FromHours(2))], buckets.Select(b => b!["start_time"]!.GetValue<long>()));
        Assert.Equal([Unix(TimeSpan.FromHours(1)), Unix(TimeSpan.FromHours(2)), Unix(TimeSpan.FromHours(3))], buckets.Select(b => b!["end_time"]!.GetValue<long>()));
        Assert.False(page["has_more"]!.GetValue<bool>());
        Assert.Null(page["next_page"]);

        var first = buckets[0]!["results"]!.AsArray().Single()!.AsObject();
        Assert.Equal(JsonNode.Parse("""
            {"object":"organization.usage.completions.result","num_model_requests":2,"input_tokens":300,"output_tokens":50,
             "input_cached_tokens":10,"input_uncached_tokens":290,"audio_seconds":0,"cost_usd":"0.003500000001",
             "model":null,"key_id":null,"app_id":null,"user_id":null,"task":null,"status":null,"api_key_id":null}
            """)!.ToJsonString(), first.ToJsonString());
        var second = buckets[1]!["results"]!.AsArray().Single()!;
        Assert.Equal(1.5m, second["audio_seconds"]!.GetValue<decimal>());
        var third = buckets[2]!["results"]!.AsArray().Single()!;
        Assert.Equal(2, third["num_model_requests"]!.GetValue<long>());
        Assert.Equal("3.000000000001", third["cost_usd"]!.GetValue<string>());
    }

    [Fact]
    public async Task Group_by_splits_a_bucket_into_one_result_per_group()
    {
        var day = $"v1/usage?start_time={Unix(TimeSpan.Zero)}&end_time={Unix(TimeSpan.FromDays(1))}";
        var page = await GetAsync(world.ReaderA, day + "&group_by=model,key_id");
        OpenApiContract.AssertValid("UsageResponse", page.ToJsonString());
        var results = page["data"]!.AsArray().Single()!["results"]!.AsArray();
        // Ordered by the group's fields, nulls first.
        Assert.Equal(
            ["lovelace:chat/-/2/3.000000000001", "lovelace:chat/key_a1/1/0.0015", "lovelace:chat/key_a2/1/0.002000000001", "lovelace:whisper/key_a2/1/0.00025"],
            results.Select(r => $"{r!["model"]}/{r["key_id"]?.GetValue<string>() ?? "-"}/{r["num_model_requests"]}/{r["cost_usd"]}"));
        Assert.All(results, r => Assert.Equal(r!["key_id"]?.ToJsonString(), r["api_key_id"]?.ToJsonString()));
        Assert.All(results, r => Assert.Null(r!["task"]));

        // group_by repeated, OpenAI's api_key_id name, and the app and user of token callers.
        var byApp = (await GetAsync(world.ReaderA, day + "&group_by=app_id&group_by=user_id"))["data"]![0]!["results"]!.AsArray();
        Assert.Equal(3, byApp.Count);
        Assert.Equal(3, byApp[0]!["num_model_requests"]!.GetValue<long>());
        Assert.Null(byApp[0]!["app_id"]);
        Assert.Equal(new[] { Server.A.ClientId, Server.A.PublicClientId }.Order(StringComparer.Ordinal), byApp.Skip(1).Select(r => r!["app_id"]!.GetValue<string>()));
        Assert.All(byApp.Skip(1), r => Assert.Equal(Server.A.UserId, r!["user_id"]!.GetValue<string>()));

        var byKey = (await GetAsync(world.ReaderA, day + "&group_by=api_key_id"))["data"]![0]!["results"]!.AsArray();
        Assert.Equal(["", "key_a1", "key_a2"], byKey.Select(r => r!["key_id"]?.GetValue<string>() ?? ""));

        var byTask = (await GetAsync(world.ReaderA, day + "&group_by[]=task"))["data"]![0]!["results"]!.AsArray();
        Assert.Equal(["audio.transcriptions/1", "chat.completions/4"], byTask.Select(r => $"{r!["task"]}/{r["num_model_requests"]}"));
    }

    [Fact]
    public async Task Empty_buckets_are_included_and_pages_follow_next_page()
    {
        var query = $"v1/usage?start_time={Unix(TimeSpan.Zero)}&end_time={Unix(TimeSpan.FromHours(5))}&bucket_width=1h&limit=2";
        var starts = new List<long>();
        var counts = new List<int>();
        var pages = 0;
        var url = query;
        while (true)
        {
            var page = await GetAsync(world.ReaderA, url);
            OpenApiContract.AssertValid("UsageResponse", page.ToJsonString());
            pages++;
            foreach (var bucket in page["data"]!.AsArray())
            {
                starts.Add(bucket!["start_time"]!.GetValue<long>());
                counts.Add(bucket["results"]!.AsArray().Count);
            }
            if (!page["has_more"]!.GetValue<bool>())
            {
                Assert.Null(page["next_page"]);
                break;
            }
            url = query + "&page=" + page["next_page"]!.GetValue<string>();
        }
        Assert.Equal(3, pages);
        Assert.Equal(Enumerable.Range(0, 5).Select(h => Unix(TimeSpan.FromHours(h))), starts);
        Assert.Equal([1, 1, 1, 0, 0], counts);

        // Daily by default, seven to a page: a week with one busy day.
        var week = await GetAsync(world.ReaderA, $"v1/usage?start_time={Unix(TimeSpan.FromDays(-3))}&end_time={Unix(TimeSpan.FromDays(30))}");
        var days = week["data"]!.AsArray();
        Assert.Equal(7, days.Count);
        Assert.Equal([0, 0, 1, 1, 0, 0, 0], days.Select(d => d!["results"]!.AsArray().Count));
        Assert.Equal(5, days[3]!["results"]![0]!["num_model_requests"]!.GetValue<long>());
        Assert.True(week["has_more"]!.GetValue<bool>());
    }

    // ---- scopes and parameters ----

    [Theory]
    [InlineData("v1/usage/requests")]
    [InlineData("v1/usage?start_time=0")]
    public async Task A_key_without_usage_read_gets_403(string path)
    {
        using var http = Server.Client(Server.A.Key);
        using var response = await http.GetAsync(path);
        var error = Credentials.Error(await response.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Equal("insufficient_scopes", error["code"]!.GetValue<string>());
        Assert.Contains(Scopes.UsageRead, error["message"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("v1/usage/requests?limit=0", "limit")]
    [InlineData("v1/usage/requests?limit=101", "limit")]
    [InlineData("v1/usage/requests?limit=ten", "limit")]
    [InlineData("v1/usage/requests?after=req_nope", "after")]
    [InlineData("v1/usage/requests?after=", "after")]
    [InlineData("v1/usage/requests?model=", "model")]
    [InlineData("v1/usage/requests?key_id=a&key_id=b", "key_id")]
    [InlineData("v1/usage/requests?status=", "status")]
    [InlineData("v1/usage", "start_time")]
    [InlineData("v1/usage?start_time=yesterday", "start_time")]
    [InlineData("v1/usage?start_time=-5", "start_time")]
    [InlineData("v1/usage?start_time=100&end_time=100", "end_time")]
    [InlineData("v1/usage?start_time=100&end_time=1e9", "end_time")]
    [InlineData("v1/usage?start_time=0&bucket_width=2h", "bucket_width")]
    [InlineData("v1/usage?start_time=0&group_by=project_id", "group_by")]
    [InlineData("v1/usage?start_time=0&group_by=model,batch", "group_by")]
    [InlineData("v1/usage?start_time=0&limit=32", "limit")]
    [InlineData("v1/usage?start_time=0&bucket_width=1h&limit=169", "limit")]
    [InlineData("v1/usage?start_time=0&bucket_width=1m&limit=1441", "limit")]
    [InlineData("v1/usage?start_time=0&end_time=864000&page=page_abc", "page")]
    [InlineData("v1/usage?start_time=0&end_time=864000&page=page_3600", "page")]
    [InlineData("v1/usage?start_time=0&end_time=864000&page=page_8640000", "page")]
    public async Task Bad_parameters_are_a_400_naming_the_parameter(string path, string param)
    {
        using var http = Server.Client(world.ReaderA);
        using var response = await http.GetAsync(path);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, body);
        OpenApiContract.AssertValid("ErrorResponse", body);
        var error = Credentials.Error(body);
        Assert.Equal(param, error["param"]!.GetValue<string>());
        Assert.Equal("invalid_request_error", error["type"]!.GetValue<string>());
    }
}

public sealed class SqliteUsageApiTests(SqliteUsageApiTests.SqliteWorld world) : UsageApiTests(world), IClassFixture<SqliteUsageApiTests.SqliteWorld>
{
    public sealed class SqliteWorld() : World(null);
}

[Collection(PostgresCollection.Name)]
public sealed class PostgresUsageApiTests(PostgresUsageApiTests.PostgresWorld world) : UsageApiTests(world), IClassFixture<PostgresUsageApiTests.PostgresWorld>
{
    public sealed class PostgresWorld(PostgresFixture postgres) : World(postgres);
}
