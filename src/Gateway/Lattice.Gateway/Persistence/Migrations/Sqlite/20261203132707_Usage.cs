using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Lattice.Gateway.Persistence.Migrations.Sqlite
{
    /// <inheritdoc />
    public partial class Usage : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "PersonalRuntimePrices",
                table: "workspaces",
                type: "TEXT",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "MeteringUnit",
                table: "task_classes",
                type: "TEXT",
                nullable: false,
                defaultValue: "tokens");

            migrationBuilder.AddColumn<string>(
                name: "Prices",
                table: "model_offers",
                type: "TEXT",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "Prices",
                table: "catalog_models",
                type: "TEXT",
                nullable: true);

            migrationBuilder.CreateTable(
                name: "usage_records",
                columns: table => new
                {
                    RequestId = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    CreatedAt = table.Column<long>(type: "INTEGER", nullable: false),
                    WorkspaceId = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    KeyId = table.Column<string>(type: "TEXT", nullable: true),
                    AppId = table.Column<string>(type: "TEXT", nullable: true),
                    UserId = table.Column<string>(type: "TEXT", nullable: true),
                    GrantId = table.Column<string>(type: "TEXT", nullable: true),
                    Task = table.Column<string>(type: "TEXT", nullable: false),
                    Model = table.Column<string>(type: "TEXT", maxLength: 300, nullable: false),
                    ServedBy = table.Column<string>(type: "TEXT", nullable: true),
                    ServedById = table.Column<string>(type: "TEXT", nullable: true),
                    Capacity = table.Column<string>(type: "TEXT", nullable: true),
                    Stream = table.Column<bool>(type: "INTEGER", nullable: false),
                    Status = table.Column<string>(type: "TEXT", nullable: false),
                    HttpStatus = table.Column<int>(type: "INTEGER", nullable: false),
                    PromptTokens = table.Column<long>(type: "INTEGER", nullable: false),
                    CompletionTokens = table.Column<long>(type: "INTEGER", nullable: false),
                    TotalTokens = table.Column<long>(type: "INTEGER", nullable: false),
                    CachedTokens = table.Column<long>(type: "INTEGER", nullable: false),
                    AudioMilliseconds = table.Column<long>(type: "INTEGER", nullable: false),
                    Estimated = table.Column<bool>(type: "INTEGER", nullable: false),
                    CostPicoUsd = table.Column<long>(type: "INTEGER", nullable: false),
                    TimeToFirstByteMicroseconds = table.Column<long>(type: "INTEGER", nullable: true),
                    DurationMicroseconds = table.Column<long>(type: "INTEGER", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_usage_records", x => x.RequestId);
                });

            migrationBuilder.CreateIndex(
                name: "IX_usage_records_GrantId_CreatedAt",
                table: "usage_records",
                columns: new[] { "GrantId", "CreatedAt" });

            migrationBuilder.CreateIndex(
                name: "IX_usage_records_WorkspaceId_CreatedAt",
                table: "usage_records",
                columns: new[] { "WorkspaceId", "CreatedAt" });

            migrationBuilder.CreateIndex(
                name: "IX_usage_records_WorkspaceId_KeyId_CreatedAt",
                table: "usage_records",
                columns: new[] { "WorkspaceId", "KeyId", "CreatedAt" });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "usage_records");

            migrationBuilder.DropColumn(
                name: "PersonalRuntimePrices",
                table: "workspaces");

            migrationBuilder.DropColumn(
                name: "MeteringUnit",
                table: "task_classes");

            migrationBuilder.DropColumn(
                name: "Prices",
                table: "model_offers");

            migrationBuilder.DropColumn(
                name: "Prices",
                table: "catalog_models");
        }
    }
}
