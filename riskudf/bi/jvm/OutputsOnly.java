package riskudf.bi;

import java.util.Arrays;
import java.util.HashSet;
import java.util.Locale;
import java.util.Set;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.SparkSessionExtensions;
import org.apache.spark.sql.catalyst.TableIdentifier;
import org.apache.spark.sql.catalyst.analysis.AnalysisContext;
import org.apache.spark.sql.catalyst.catalog.CatalogTable;
import org.apache.spark.sql.catalyst.catalog.HiveTableRelation;
import org.apache.spark.sql.catalyst.plans.logical.Command;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.catalyst.plans.logical.View;
import org.apache.spark.sql.catalyst.rules.Rule;
import org.apache.spark.sql.connector.catalog.Identifier;
import org.apache.hadoop.fs.Path;
import org.apache.spark.sql.execution.datasources.HadoopFsRelation;
import org.apache.spark.sql.execution.datasources.LogicalRelation;
import org.apache.spark.sql.execution.datasources.v2.DataSourceV2Relation;
import scala.Option;
import scala.jdk.javaapi.CollectionConverters;
import scala.runtime.AbstractFunction1;
import scala.runtime.BoxedUnit;

/**
 * Spark session extension of the BI server: once the system property riskudf.bi.readable holds
 * the readable tables ("db.table,..."), every statement is checked at the end of its analysis. A table is
 * read only if it is one of those or sits under a view that riskudf published (a persistent
 * view); a path read (delta.`/path`) or any other table is refused, and so is every command but
 * USE, SHOW, DESCRIBE and SET. Before the property is set (while the server publishes its
 * views) nothing is checked.
 */
public final class OutputsOnly extends AbstractFunction1<SparkSessionExtensions, BoxedUnit> {
  public static final String READABLE = "riskudf.bi.readable";
  private static final Set<String> COMMANDS =
      new HashSet<>(
          Arrays.asList(
              "SetCatalogAndNamespace", "SetNamespaceCommand", "SetCatalogCommand", "SetCommand",
              "ResetCommand", "ShowTables", "ShowTablesCommand", "ShowTableExtended",
              "ShowNamespaces", "ShowViews", "ShowViewsCommand", "ShowColumns",
              "ShowColumnsCommand", "ShowFunctions", "ShowFunctionsCommand", "ShowCatalogs",
              "DescribeRelation", "DescribeTableCommand", "DescribeColumn",
              "DescribeColumnCommand", "DescribeNamespace", "DescribeDatabaseCommand",
              "DescribeFunction", "DescribeFunctionCommand", "ShowCurrentNamespaceCommand"));

  @Override
  public BoxedUnit apply(SparkSessionExtensions extensions) {
    extensions.injectPostHocResolutionRule(
        new AbstractFunction1<SparkSession, Rule<LogicalPlan>>() {
          @Override
          public Rule<LogicalPlan> apply(SparkSession session) {
            return new Guard();
          }
        });
    return BoxedUnit.UNIT;
  }

  /**
   * Runs at the end of each analysis. A view's body is analysed on its own first (nested view
   * depth above 0): that analysis is not checked; the statement that reads the view is, and it
   * reaches the view's tables through the View node, which riskudf published.
   */
  static final class Guard extends Rule<LogicalPlan> {
    @Override
    public LogicalPlan apply(LogicalPlan plan) {
      if (AnalysisContext.get().nestedViewDepth() == 0) {
        check(plan);
      }
      return plan;
    }
  }

  static void check(LogicalPlan plan) {
    String readable = System.getProperty(READABLE);
    if (readable == null) {
      return;
    }
    Set<String> allowed =
        new HashSet<>(Arrays.asList(readable.toLowerCase(Locale.ROOT).split(",")));
    visit(plan, allowed);
  }

  private static void visit(LogicalPlan plan, Set<String> allowed) {
    if (plan instanceof View && !((View) plan).isTempView()) {
      return;
    }
    if (plan instanceof Command && !COMMANDS.contains(plan.getClass().getSimpleName())) {
      throw refused("this statement (" + plan.nodeName() + ") is not allowed here");
    }
    String table = null;
    boolean relation = false;
    if (plan instanceof LogicalRelation) {
      LogicalRelation logical = (LogicalRelation) plan;
      relation = !deltaLog(logical);
      table = name(logical.catalogTable());
    } else if (plan instanceof HiveTableRelation) {
      relation = true;
      table = name(Option.apply(((HiveTableRelation) plan).tableMeta()));
    } else if (plan instanceof DataSourceV2Relation) {
      relation = true;
      Option<Identifier> id = ((DataSourceV2Relation) plan).identifier();
      if (id.isDefined()) {
        table = String.join(".", id.get().namespace()) + "." + id.get().name();
      }
    }
    if (relation && (table == null || !allowed.contains(table.toLowerCase(Locale.ROOT)))) {
      String what = table == null ? "a path or file (" + plan.nodeName() + ")" : "table " + table;
      throw refused(what + " is not readable here");
    }
    for (LogicalPlan child : CollectionConverters.asJava(plan.children())) {
      visit(child, allowed);
    }
    for (LogicalPlan subquery : CollectionConverters.asJava(plan.subqueries())) {
      visit(subquery, allowed);
    }
  }

  /**
   * Delta reads a table's transaction log (_delta_log) with plans of its own while it resolves
   * the table; those are not the statement's reads. SQL cannot name such files here: BI sessions
   * run with spark.sql.runSQLOnFiles off.
   */
  private static boolean deltaLog(LogicalRelation relation) {
    if (relation.catalogTable().isDefined()
        || !(relation.relation() instanceof HadoopFsRelation)) {
      return false;
    }
    HadoopFsRelation files = (HadoopFsRelation) relation.relation();
    java.util.List<Path> roots = CollectionConverters.asJava(files.location().rootPaths());
    return !roots.isEmpty() && roots.stream().allMatch(p -> p.toString().contains("/_delta_log"));
  }

  private static String name(Option<CatalogTable> table) {
    if (table.isEmpty()) {
      return null;
    }
    TableIdentifier id = table.get().identifier();
    return (id.database().isDefined() ? id.database().get() + "." : "") + id.table();
  }

  private static SecurityException refused(String what) {
    return new SecurityException(
        "riskudf BI serves the output tables and views only: " + what);
  }
}
