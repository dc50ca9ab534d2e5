using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Lattice.Gateway.Persistence.Migrations.Sqlite
{
    /// <inheritdoc />
    public partial class Runtimes : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "RuntimeId",
                table: "model_offers",
                type: "TEXT",
                nullable: true);

            migrationBuilder.CreateTable(
                name: "runtimes",
                columns: table => new
                {
                    LatticeId = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    WorkspaceId = table.Column<string>(type: "TEXT", nullable: false),
                    DisplayName = table.Column<string>(type: "TEXT", nullable: false),
                    ExecutionBackend = table.Column<string>(type: "TEXT", nullable: false),
                    Hosted = table.Column<bool>(type: "INTEGER", nullable: false),
                    BootstrapTokenHash = table.Column<string>(type: "TEXT", nullable: true),
                    BootstrapExpiresAt = table.Column<long>(type: "INTEGER", nullable: true),
                    PairedAt = table.Column<long>(type: "INTEGER", nullable: true),
                    CredentialHash = table.Column<string>(type: "TEXT", nullable: true),
                    PublicWorkKey = table.Column<string>(type: "TEXT", nullable: true),
                    CreatedAt = table.Column<long>(type: "INTEGER", nullable: false),
                    UpdatedAt = table.Column<long>(type: "INTEGER", nullable: false),
                    LastSeenAt = table.Column<long>(type: "INTEGER", nullable: true),
                    RevokedAt = table.Column<long>(type: "INTEGER", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_runtimes", x => x.LatticeId);
                    table.ForeignKey(
                        name: "FK_runtimes_workspaces_WorkspaceId",
                        column: x => x.WorkspaceId,
                        principalTable: "workspaces",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateIndex(
                name: "IX_runtimes_BootstrapTokenHash",
                table: "runtimes",
                column: "BootstrapTokenHash",
                unique: true);

            migrationBuilder.CreateIndex(
                name: "IX_runtimes_CredentialHash",
                table: "runtimes",
                column: "CredentialHash",
                unique: true);

            migrationBuilder.CreateIndex(
                name: "IX_runtimes_WorkspaceId",
                table: "runtimes",
                column: "WorkspaceId");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "runtimes");

            migrationBuilder.DropColumn(
                name: "RuntimeId",
                table: "model_offers");
        }
    }
}
